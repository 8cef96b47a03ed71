"""Fixtures: stubs generated from proto/ with grpcio-tools, a stand-in provider and a real gateway."""

import os
import pathlib
import subprocess
import sys
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug"
KEY = "sk-python-test-key-42"


def _bin(name):
    path = TARGET / name
    if not path.exists():
        pytest.exit(f"{path} is missing: run `cargo build --workspace` first", returncode=2)
    return str(path)


@pytest.fixture(scope="session")
def pb():
    """Generates the openclanker.v1 Python stubs from proto/ and imports them."""
    out = pathlib.Path(tempfile.mkdtemp(prefix="oc-py-stubs-"))
    import grpc_tools
    from grpc_tools import protoc

    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))
    rc = protoc.main(
        ["protoc", f"-I{ROOT / 'proto'}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}"]
        + protos
    )
    assert rc == 0, "protoc failed"
    sys.path.insert(0, str(out))
    from openclanker.v1 import chat_pb2, chat_pb2_grpc, gateway_pb2, gateway_pb2_grpc  # noqa: E402
    from openclanker.v1 import session_pb2, session_pb2_grpc, types_pb2  # noqa: E402

    class Stubs:
        pass

    s = Stubs()
    for name, mod in dict(
        chat_pb2=chat_pb2,
        chat_pb2_grpc=chat_pb2_grpc,
        session_pb2=session_pb2,
        session_pb2_grpc=session_pb2_grpc,
        gateway_pb2=gateway_pb2,
        gateway_pb2_grpc=gateway_pb2_grpc,
        types_pb2=types_pb2,
    ).items():
        setattr(s, name, mod)
    return s


def _start(cmd, env):
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise RuntimeError(f"{cmd[0]} did not start: {line!r}")
    return proc, line.strip().rsplit(" ", 1)[-1].replace("http://", "")


TOKEN = "py-secured-token-0123456789"


@pytest.fixture(scope="session")
def gateway():
    """Address (host:port) of a gateway talking to a stand-in provider."""
    yield from _gateway({})


@pytest.fixture(scope="session")
def secured_gateway():
    """A gateway that requires the API token TOKEN."""
    yield from _gateway({"OPEN_CLANKER_API_TOKENS": f"py:{TOKEN}"})


def _gateway(extra_env):
    home = tempfile.mkdtemp(prefix="oc-py-home-")
    base_env = {"PATH": os.environ.get("PATH", ""), "HOME": home, "XDG_CONFIG_HOME": home}
    standin, standin_addr = _start(
        [_bin("open-clanker-standin"), "--listen", "127.0.0.1:0", "--api-key", KEY], base_env
    )
    env = dict(
        base_env,
        OPEN_CLANKER_LISTEN="127.0.0.1:0",
        OPEN_CLANKER_DATA_DIR=os.path.join(home, "data"),
        ANTHROPIC_API_KEY=KEY,
        ANTHROPIC_BASE_URL=f"http://{standin_addr}",
        **extra_env,
    )
    gw, addr = _start([_bin("open-clanker"), "gateway"], env)
    yield addr
    for p in (gw, standin):
        p.terminate()
        p.wait(timeout=10)

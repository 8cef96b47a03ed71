#!/usr/bin/env bash
# Runs every test: Rust unit and integration tests (including end-to-end runs of the real binary
# against stand-in providers and a stand-in Telegram Bot API on 127.0.0.1), the Python grpcio and
# openai-SDK client tests, the SDK examples (Python over gRPC, TypeScript over gRPC-Web) and the
# web chat in headless Chromium. Installs missing test clients (pip, npm, Debian's chromium as root).
# The container image test runs in CI (.ci/container-test.sh: it needs podman and root).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c 'import grpc_tools, grpc_health, grpc_reflection, openai, pytest' 2>/dev/null; then
  echo "installing the Python test clients (tests/python/requirements.txt)"
  python3 -m pip install -q --disable-pip-version-check -r tests/python/requirements.txt
fi

cargo build --workspace --locked --bins
cargo test --workspace --locked
python3 -m pytest -q tests/python
SKIP_BUILD=1 scripts/examples-test.sh
SKIP_BUILD=1 scripts/web-test.sh

#!/usr/bin/env bash
# Runs every test: Rust unit and integration tests (including end-to-end runs of the real binary
# against stand-in providers on 127.0.0.1) and the Python grpcio client tests.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c 'import grpc_tools, grpc_health, grpc_reflection, pytest' 2>/dev/null; then
  echo "installing the Python test client (tests/python/requirements.txt)"
  python3 -m pip install -q -r tests/python/requirements.txt
fi

cargo build --workspace --locked --bins
cargo test --workspace --locked
python3 -m pytest -q tests/python

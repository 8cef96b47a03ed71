#!/usr/bin/env bash
# CI's short smoke of the load generator (bench/): a few hundred streaming chats over gRPC, gRPC-Web
# and the OpenAI-compatible endpoint against a real gateway process and a stand-in provider
# process, every scenario once, all on 127.0.0.1.
#
# It fails only on errors: a wrong or missing answer, a gRPC/HTTP error, a turn not stored, a
# process that crashed or did not start. Timings are printed, never judged (CI machines are shared).
#
# Debug binaries by default: `cargo build --workspace --bins` (scripts/test.sh) has built them
# already, so the smoke costs only its own run (a few minutes). BENCH_SMOKE_PROFILE=release uses
# target/release instead (a full fat-LTO release build when it is not there yet).
set -euo pipefail
cd "$(dirname "$0")/.."

profile="${BENCH_SMOKE_PROFILE:-debug}"
case "$profile" in
  debug) build_flags=() ;;
  release) build_flags=(--release) ;;
  *) echo "BENCH_SMOKE_PROFILE must be debug or release, not $profile" >&2; exit 2 ;;
esac

started=$SECONDS
cargo build "${build_flags[@]}" --locked -p open-clanker -p open-clanker-testkit -p open-clanker-bench --bins
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/$profile"
echo "bench-smoke: binaries from $bin (build step $((SECONDS - started)) s)"

bench() {
  # Bounded twice: every chat times out on its own (--stream-timeout-secs), and each run here.
  timeout --signal=TERM --kill-after=30 600 "$bin/open-clanker-bench" \
    --gateway-bin "$bin/open-clanker" --standin-bin "$bin/open-clanker-standin" \
    --repeat 1 --warmup 5 --stream-timeout-secs 60 "$@"
}

# The streaming paths over all three protocols: 300 concurrent streams, 300 held open.
bench --protocol grpc,grpc-web,openai \
  --single-turns 50 \
  --streams 300 --per-conn 100 --tokens 10 --delay-ms 100 --ramp-ms 1000 \
  --hold-streams 300 --hold-settle-ms 500 \
  single load hold

# The rest over gRPC: start-up, idle memory, back-to-back turns, a few seconds of soak.
bench --protocol grpc \
  --startup-runs 3 \
  --throughput-workers 16 --throughput-secs 3 \
  --soak-workers 50 --soak-secs 5 --soak-tokens 5 --soak-delay-ms 20 \
  startup idle throughput soak

echo "bench-smoke: passed in $((SECONDS - started)) s"

#!/usr/bin/env bash
# Load benchmark: jwtgate side by side with plain nginx and HAProxy's jwt_verify, in one run of
# the shared harness (../shared/bench, loopback only, one pinned core per proxy).
#
#   benches/load.sh               # ROUNDS=5 by default; prints the comparison table
#   ROUNDS=3 DURATION=5 benches/load.sh
#
# Needs the harness's tools once: ../shared/bench/setup.sh (haproxy, nginx, wrk, h2load, PyJWT).
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=$(cd "${BENCH_DIR:-../shared/bench}" && pwd)
cargo build --release --locked --bin jwtgate
# Wherever cargo puts it (CARGO_TARGET_DIR, a config's build.target-dir).
BIN="$(cargo metadata --format-version 1 --no-deps | ${PYTHON:-python3} -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release/jwtgate"
export ROUNDS=${ROUNDS:-5}
GATEWAY_CMD="$BENCH/jwtgate.sh $BIN" "$BENCH/run.sh"

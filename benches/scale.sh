#!/usr/bin/env bash
# The README's "Scale" tables, side by side with nginx and HAProxy in one run (loopback only,
# everything stops by itself; ../shared/bench/setup.sh installs the peers once):
#
#   benches/scale.sh                  # memory, restart, burst, then the four shapes (~15 min)
#   PARTS=memory,restart benches/scale.sh
#
# memory   ../shared/bench/peers/idle.py     RSS per idle keep-alive connection, plain and TLS
# restart  ../shared/bench/peers/restart.py  requests lost while the upstream restarts under load
# burst    benches/burst.py                  32 clients, new connection each, slow small upstream
# shapes   ../shared/bench/peers/bench.py    CPU µs/request: plain, logs, tls, tlsclose
# rs256    benches/rs256.py                  CPU µs/request with an RS256 token vs HAProxy jwt_verify RS256
#          (not in the default PARTS: PARTS=rs256 benches/scale.sh)
# grpc     benches/grpc_unary.py             CPU µs per unary gRPC call (h2load, h2c) vs nginx grpc_pass
#          and HAProxy jwt_verify proto h2, and the upstream direct (PARTS=grpc benches/scale.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=$(cd "${PEERS:-../shared/bench/peers}" && pwd)
PARTS=${PARTS:-memory,restart,burst,shapes}
PYTHON=${PYTHON:-python3}
cargo build --release --locked --bin jwtgate
# Wherever cargo puts it (CARGO_TARGET_DIR, a config's build.target-dir).
export JWTGATE_BIN="$(cargo metadata --format-version 1 --no-deps | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release/jwtgate"
export PEERS
# 10,000 client connections plus the proxies' own descriptors.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
for part in ${PARTS//,/ }; do
    echo "== $part"
    case $part in
        memory) "$PYTHON" "$PEERS/idle.py" ;;
        restart) "$PYTHON" "$PEERS/restart.py" ;;
        burst) "$PYTHON" benches/burst.py ;;
        shapes) "$PYTHON" "$PEERS/bench.py" ;;
        rs256) PEERS="$PEERS" "$PYTHON" benches/rs256.py ;;
        grpc) HAPROXY_CFG="$PEERS/../conf/haproxy-jwt.cfg" "$PYTHON" benches/grpc_unary.py ;;
        *) echo "unknown part: $part (memory, restart, burst, shapes, rs256, grpc)" >&2; exit 2 ;;
    esac
done

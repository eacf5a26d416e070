#!/usr/bin/env bash
# HTTP/2 (h2c, prior knowledge) throughput: jwtgate and HAProxy's jwt_verify side by side, one
# pinned core each, with h2load on the other core. Loopback only; stops what it starts.
#
#   benches/h2.sh                 # N=200000 requests, 32 connections x 10 streams, per target
#
# Needs ../shared/bench/setup.sh (haproxy, nginx, h2load, PyJWT).
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=$(cd "${BENCH_DIR:-../shared/bench}" && pwd)
N=${N:-200000} C=${C:-32} M=${M:-10}
PYTHON=${PYTHON:-python3}
cargo build --release --locked --bin jwtgate >/dev/null 2>&1
# Wherever cargo puts it (CARGO_TARGET_DIR, a config's build.target-dir).
BIN="$(cargo metadata --format-version 1 --no-deps | ${PYTHON:-python3} -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release/jwtgate"
run=$(mktemp -d)
mkdir -p "$run/tmp"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.5; rm -rf "$run"; }
trap cleanup EXIT
JWT_SECRET=$("$PYTHON" -c 'import secrets,string; a=string.ascii_letters+string.digits; print("".join(secrets.choice(a) for _ in range(48)))')
export JWT_SECRET

taskset -c 1 nginx -p "$run/" -c "$BENCH/conf/upstream-nginx.conf" -g "daemon off; worker_processes 1;" &
pids+=($!)
# HAProxy: the harness's JWT config, listening for h2c instead.
sed 's|^    bind .*|    bind 127.0.0.1:9012 proto h2|' "$BENCH/conf/haproxy-jwt.cfg" >"$run/haproxy-h2.cfg"
PROXY_THREADS=1 taskset -c 0 haproxy -db -f "$run/haproxy-h2.cfg" &
pids+=($!)
LISTEN_ADDR=127.0.0.1:9014 UPSTREAM_URL=http://127.0.0.1:9001 TOKIO_WORKER_THREADS=1 \
    taskset -c 0 "$BENCH/jwtgate.sh" "$BIN" &
pids+=($!)
sleep 2
TOKEN=$("$PYTHON" "$BENCH/mint.py")
ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
hz=$(getconf CLK_TCK)
printf '%-12s %10s %10s %8s\n' target req/s us/req errors
for spec in haproxy-jwt:9012 gateway:9014; do
    name=${spec%%:*} port=${spec##*:}
    pid=$(ss -ltnpH "sport = :$port" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1)
    # warm-up, then measure
    taskset -c 1 h2load -n 20000 -c "$C" -m "$M" -t 1 -H "authorization: Bearer $TOKEN" "http://127.0.0.1:$port/" >/dev/null
    t0=$(ticks "$pid")
    out=$(taskset -c 1 timeout 120 h2load -n "$N" -c "$C" -m "$M" -t 1 -H "authorization: Bearer $TOKEN" "http://127.0.0.1:$port/")
    t1=$(ticks "$pid")
    rps=$(echo "$out" | sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p')
    ok=$(echo "$out" | sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p')
    us=$(awk -v t=$((t1 - t0)) -v hz="$hz" -v n="$N" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }')
    printf '%-12s %10s %10s %8s\n' "$name" "$rps" "$us" "$((N - ok))"
done

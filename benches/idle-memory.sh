#!/usr/bin/env bash
# Memory per idle keep-alive client connection: RSS of jwtgate before and after N clients have
# each made one request and stayed connected (loopback only; everything stops by itself).
#
#   benches/idle-memory.sh            # N=10000
#   N=2000 benches/idle-memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000}
PYTHON=${PYTHON:-python3}
cargo build --release --locked --bin jwtgate >/dev/null 2>&1
# Wherever cargo puts it (CARGO_TARGET_DIR, a config's build.target-dir).
BIN="$(cargo metadata --format-version 1 --no-deps | ${PYTHON:-python3} -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release/jwtgate"
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

# A tiny upstream: answers every request with 200 "ok".
"$PYTHON" - <<'PY' &
import asyncio
async def handle(r, w):
    try:
        while True:
            head = await r.readuntil(b"\r\n\r\n")
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); await w.drain()
    except Exception:
        w.close()
async def main():
    s = await asyncio.start_server(handle, "127.0.0.1", 19081)
    await asyncio.sleep(600)
asyncio.run(main())
PY
pids+=($!)
cat >"$tmp/jwtgate.toml" <<'TOML'
[server]
listen = "127.0.0.1:19080"
workers = 1
header_read_timeout = "10m"
idle_timeout = "10m"
max_connections = 20000
[[route]]
path = "/"
upstream = "http://127.0.0.1:19081"
auth = "public"
TOML
JWT_SECRET_KEY=$("$BIN" secret) RUST_LOG=warn "$BIN" --config "$tmp/jwtgate.toml" &
gw=$!
pids+=($gw)
sleep 1
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
# Warm up: one request so lazily allocated state (pools, TLS-free paths) exists before the baseline.
curl -s -o /dev/null http://127.0.0.1:19080/
before=$(rss $gw)
ready=$tmp/ready
"$PYTHON" - "$N" "$ready" <<'PY' &
import asyncio, sys
N = int(sys.argv[1])
async def one(conns):
    r, w = await asyncio.open_connection("127.0.0.1", 19080)
    w.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"); await w.drain()
    await r.readuntil(b"ok")
    conns.append((r, w))
async def main():
    conns = []
    for i in range(0, N, 20):
        await asyncio.gather(*(one(conns) for _ in range(min(20, N - i))))
    print(f"{len(conns)} idle keep-alive connections open", flush=True)
    open(sys.argv[2], "w").close()
    await asyncio.sleep(10)
asyncio.run(main())
PY
clients=$!
pids+=($clients)
for _ in $(seq 600); do [ -e "$ready" ] && break; sleep 0.1; done
[ -e "$ready" ] || { echo "clients did not connect" >&2; exit 1; }
sleep 1
after=$(rss $gw)
echo "jwtgate RSS before: ${before} KiB, with $N idle connections: ${after} KiB"
echo "per connection: $(( (after - before) * 1024 / N )) bytes"

#!/usr/bin/env python3
"""A burst against a small upstream, side by side: nginx, HAProxy and jwtgate (the peers of
../shared/bench/peers, same configs) in front of an upstream that accepts slowly (listen backlog 2,
ACCEPTS accepts a second, keep-alive once accepted), each with a 1 s connect timeout. CLIENTS
concurrent clients send REQUESTS requests in all, each on a new client connection; counts the
answers that are not 200. Loopback only; stops what it started.

    JWTGATE_BIN=$PWD/target/release/jwtgate python3 benches/burst.py
    CLIENTS=32 REQUESTS=800 ACCEPTS=50 PEERS=../shared/bench/peers python3 benches/burst.py
"""
import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.abspath(os.environ.get("PEERS", os.path.join(HERE, "..", "..", "shared", "bench", "peers"))))
import bench  # noqa: E402  (copies the peers' configs into a temporary directory and enters it)

CLIENTS = int(os.environ.get("CLIENTS", "32"))
REQUESTS = int(os.environ.get("REQUESTS", "800"))
ACCEPTS = float(os.environ.get("ACCEPTS", "50"))


class SlowUpstream:
    """127.0.0.1:9201 (where the peers' configs send requests): backlog 2, one accept every
    1/ACCEPTS s, then `200 ok` keep-alive on that connection until it closes."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 9201))
        self.sock.listen(2)
        self.accepted = 0
        self.stopped = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()
            time.sleep(1 / ACCEPTS)

    @staticmethod
    def serve(conn):
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    try:
                        chunk = conn.recv(65536)
                    except OSError:
                        return
                    if not chunk:
                        return
                    buf += chunk
                _, buf = buf.split(b"\r\n\r\n", 1)
                try:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                except OSError:
                    return

    def stop(self):
        self.stopped = True
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept; a bare close would not
        self.sock.close()


async def one(port, request):
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
        w.write(request)
        await w.drain()
        data = await asyncio.wait_for(r.read(), 10)
        w.close()
        return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
    except (OSError, asyncio.TimeoutError, ValueError, IndexError):
        return 0


async def burst(port):
    request = (f"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {bench.TOK}\r\n"
               "Connection: close\r\n\r\n").encode()
    left = iter(range(REQUESTS))
    statuses = []

    async def client():
        for _ in left:
            statuses.append(await one(port, request))
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return statuses


def run(kind):
    # Each peer with a 1 s connect timeout to the upstream.
    if kind == "jwtgate":
        conf = open("jwtgate.toml").read().replace("workers = 1", "workers = 1\nconnect_timeout = \"1s\"")
        open("jwtgate-both.toml", "w").write(conf)
    open("haproxy.cfg", "w").write(open(os.path.join(bench.HERE, "haproxy.cfg")).read()
                                   .replace("timeout connect 2s", "timeout connect 1s"))
    open("nginx-proxy.conf", "w").write(open(os.path.join(bench.HERE, "nginx-proxy.conf")).read()
                                        .replace("proxy_http_version 1.1;", "proxy_http_version 1.1; proxy_connect_timeout 1s;"))
    up = SlowUpstream()
    p = bench.start(kind, False)
    try:
        started = time.monotonic()
        statuses = asyncio.run(burst(bench.PORTS[kind][0]))
        took = time.monotonic() - started
    finally:
        p.send_signal(signal.SIGTERM if kind != "nginx" else signal.SIGQUIT)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        up.stop()
        time.sleep(0.3)
    bad = sum(1 for s in statuses if s != 200)
    print(f"{kind:8s} {len(statuses)} requests in {took:.1f}s, {bad} not 200 "
          f"({sorted(set(s for s in statuses if s != 200))}), upstream accepted {up.accepted}", flush=True)
    return bad


def main():
    print(f"burst: {CLIENTS} clients, {REQUESTS} requests (new client connection each), upstream backlog 2, "
          f"{ACCEPTS:g} accepts/s, connect timeout 1s")
    bad = {k: run(k) for k in ("nginx", "haproxy", "jwtgate")}
    print(f"burst: jwtgate {bad['jwtgate']} failed; haproxy {bad['haproxy']}, nginx {bad['nginx']}")
    return 0 if bad["jwtgate"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

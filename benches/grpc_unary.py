"""Unary gRPC side by side, one pinned core each, in one run (the README's "gRPC" figures):
h2load sends unary gRPC calls (POST, `content-type: application/grpc`, `te: trailers`, a framed
message) over h2c with a bearer token to

  * the upstream direct (no proxy: the baseline);
  * nginx 1.22 `grpc_pass` (a plain gRPC proxy, no authentication);
  * HAProxy 2.6 with `jwt_verify` (the shared harness's HS256 checks) and `proto h2` both sides;
  * jwtgate, upstream `h2c://`, HS256.

The upstream is nginx answering every call on h2c like a gRPC server (a framed reply,
`grpc-status: 0` trailers), pinned to core 1 with h2load; each proxy runs alone on core 0. CPU
per call is the proxy's user+system ticks over the run divided by the calls (best of ROUNDS);
calls/s is the median.

    JWTGATE_BIN=target/release/jwtgate python3 benches/grpc_unary.py    # ~2 min
    env: N (calls per run, 200000), C (connections, 16), M (streams per connection, 10), ROUNDS (3)

Loopback only; it stops what it starts and removes its temp dir."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from hs256 import SECRET, token

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.abspath(os.environ.get("JWTGATE_BIN", os.path.join(HERE, "..", "target", "release", "jwtgate")))
N = int(os.environ.get("N", "200000"))
C = int(os.environ.get("C", "16"))
M = int(os.environ.get("M", "10"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
CLK = os.sysconf("SC_CLK_TCK")
UP, NGINX, HAPROXY, JWTGATE = 9301, 9302, 9303, 9304

UPSTREAM = f"""pid up.pid;
error_log up.err;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path tmp; proxy_temp_path tmp; fastcgi_temp_path tmp; uwsgi_temp_path tmp;
    scgi_temp_path tmp;
    server {{
        listen 127.0.0.1:{UP} http2;
        http2_max_concurrent_streams 1000;
        keepalive_requests 100000000;
        location / {{
            default_type application/grpc;
            add_trailer grpc-status 0;
            return 200 "hello";
        }}
    }}
}}
"""

NGINX_PROXY = f"""pid px.pid;
error_log px.err;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path tmp; proxy_temp_path tmp; fastcgi_temp_path tmp; uwsgi_temp_path tmp;
    scgi_temp_path tmp;
    upstream up {{ server 127.0.0.1:{UP}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{NGINX} http2;
        http2_max_concurrent_streams 1000;
        keepalive_requests 100000000;
        location / {{ grpc_pass grpc://up; }}
    }}
}}
"""

JWTGATE_TOML = f"""[server]
listen = "127.0.0.1:{JWTGATE}"
workers = 1
[[route]]
path = "/"
upstream = "h2c://127.0.0.1:{UP}"
"""


def haproxy_cfg(shared):
    """The shared harness's HAProxy JWT config, h2c on both sides."""
    cfg = open(shared).read()
    cfg = cfg.replace('bind "${HAPROXY_BIND-127.0.0.1:9002}"', f"bind 127.0.0.1:{HAPROXY} proto h2")
    cfg = cfg.replace("server up1 127.0.0.1:9001", f"server up1 127.0.0.1:{UP} proto h2")
    assert "proto h2" in cfg and f"127.0.0.1:{UP}" in cfg, "the harness's haproxy-jwt.cfg changed shape"
    return cfg



def ticks(pids):
    total = 0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except FileNotFoundError:
            pass
    return total


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [pid] + [int(x) for x in out]


def h2load(port, tok, n):
    """Runs h2load on core 1: (calls that got 2xx, calls/s, failures)."""
    out = subprocess.run(
        ["taskset", "-c", "1", "h2load", "-n", str(n), "-c", str(C), "-m", str(M), "-d", "req.bin",
         "-H", "content-type: application/grpc", "-H", "te: trailers", "-H", f"authorization: Bearer {tok}",
         f"http://127.0.0.1:{port}/bench.Echo/Unary"],
        capture_output=True, text=True).stdout
    ok = rps = 0.0
    failed = n
    for line in out.splitlines():
        if line.startswith("status codes:"):
            ok = int(line.split()[2])
        if line.startswith("finished in"):
            rps = float(line.split(",")[1].split()[0])
        if line.startswith("requests:"):
            parts = line.replace(",", "").split()
            failed = int(parts[parts.index("failed") - 1]) + int(parts[parts.index("errored") - 1])
    return int(ok), rps, failed


def start(kind, env):
    if kind == "nginx":
        return subprocess.Popen(["taskset", "-c", "0", "nginx", "-p", os.getcwd() + "/", "-c", "nginx-px.conf",
                                 "-g", "daemon off; worker_processes 1;"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if kind == "haproxy":
        return subprocess.Popen(["taskset", "-c", "0", "haproxy", "-db", "-f", "haproxy.cfg"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return subprocess.Popen(["taskset", "-c", "0", BIN, "--config", "jwtgate.toml"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    shared = os.path.abspath(os.environ.get(
        "HAPROXY_CFG", os.path.join(HERE, "..", "..", "shared", "bench", "conf", "haproxy-jwt.cfg")))
    work = tempfile.mkdtemp(prefix="jwtgate-grpc-bench-")
    os.chdir(work)
    os.mkdir("tmp")
    open("up.conf", "w").write(UPSTREAM)
    open("nginx-px.conf", "w").write(NGINX_PROXY)
    open("haproxy.cfg", "w").write(haproxy_cfg(shared))
    open("jwtgate.toml", "w").write(JWTGATE_TOML)
    # One gRPC message: uncompressed, 5 bytes ("hello").
    open("req.bin", "wb").write(b"\x00\x00\x00\x00\x05hello")
    env = dict(os.environ, JWT_SECRET=SECRET, JWT_SECRET_KEY=SECRET, RUST_LOG="warn", PROXY_THREADS="1")
    tok = token()
    up = subprocess.Popen(["taskset", "-c", "1", "nginx", "-p", work + "/", "-c", "up.conf", "-g",
                           "daemon off; worker_processes 1;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    targets = [("direct", None, UP), ("nginx grpc_pass", "nginx", NGINX),
               ("haproxy jwt_verify", "haproxy", HAPROXY), ("jwtgate", "jwtgate", JWTGATE)]
    res = {}
    try:
        time.sleep(0.5)
        for rnd in range(ROUNDS):
            order = targets[rnd % len(targets):] + targets[:rnd % len(targets)]
            for name, kind, port in order:
                p = start(kind, env) if kind else None
                time.sleep(1.0)
                # A forged token must not pass (jwtgate: gRPC UNAUTHENTICATED; HAProxy: 401).
                if kind in ("haproxy", "jwtgate"):
                    ok, _, _ = h2load_check(port, tok + "x")
                    if ok:
                        raise SystemExit(f"{name}: a forged token passed")
                h2load(port, tok, N // 10)  # warm-up
                pids = children(p.pid) if p else []
                t0 = ticks(pids)
                ok, rps, failed = h2load(port, tok, N)
                t1 = ticks(pids)
                us = (t1 - t0) / CLK * 1e6 / max(ok, 1)
                res.setdefault(name, []).append((us, rps, N - ok + failed))
                if p:
                    p.send_signal(signal.SIGQUIT if kind == "nginx" else signal.SIGTERM)
                    try:
                        p.wait(10)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()
                time.sleep(0.3)
    finally:
        up.send_signal(signal.SIGQUIT)
        up.wait()
        os.chdir("/")
        shutil.rmtree(work, ignore_errors=True)
    base = min(u for u, _, _ in res["nginx grpc_pass"])
    print(f"{'target':22s} {'us/call min':>11s} {'calls/s med':>11s} {'not ok':>6s}  vs nginx grpc_pass")
    for name, kind, _ in targets:
        rows = res[name]
        us = min(u for u, _, _ in rows)
        rps = sorted(r for _, r, _ in rows)[len(rows) // 2]
        bad = sum(e for _, _, e in rows)  # not 2xx, or failed (nginx: 502s it logs itself)
        ratio = f"{us / base:.2f}" if kind else "-"
        print(f"{name:22s} {us if kind else 0:11.1f} {rps:11.0f} {bad:6d}  {ratio}")


def h2load_check(port, tok):
    """One call with `tok`: (got a 2xx with grpc-status 0, ...) as h2load sees it."""
    out = subprocess.run(
        ["curl", "-s", "--http2-prior-knowledge", "-o", "/dev/null", "-D", "-", "--raw",
         "-H", "content-type: application/grpc", "-H", "te: trailers", "-H", f"authorization: Bearer {tok}",
         "--data-binary", "@req.bin", f"http://127.0.0.1:{port}/bench.Echo/Unary"],
        capture_output=True, text=True).stdout.lower()
    passed = out.startswith("http/2 200") and "grpc-status: 16" not in out
    return passed, out, None


if __name__ == "__main__":
    if not os.path.exists(BIN):
        sys.exit(f"{BIN}: build it first (cargo build --release)")
    main()

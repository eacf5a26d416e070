#!/usr/bin/env python3
"""Forward-auth mode's cost, in one run (see the README's forward-auth section):

1. CPU per check against CPU per inline proxied request: one jwtgate (pinned to core 0) with
   both listeners, the same token and route; wrk (core 1) sends nginx-dialect checks to the
   check listener, then the same requests to the inline listener, which forwards them to an
   nginx upstream (core 1) that answers "ok". CPU microseconds per request of jwtgate alone,
   best of ROUNDS; the issue asks for checks <= 0.6x.
2. End to end, so an operator can choose: the client -> nginx with auth_request asking jwtgate
   (config/forward-auth/nginx.conf) -> the upstream; the client -> nginx proxying alone (no
   auth); the client -> jwtgate inline. Requests/s at 64 connections, CPU per request of the
   proxies together (nginx + jwtgate), and latency p50/p99 at 8 connections (wrk --latency),
   with the p99 added over nginx alone.

Needs nginx, wrk, taskset, PyJWT; a release build (JWTGATE_BIN, default target/release/jwtgate).
Env: DUR (8 s), ROUNDS (3).
    .ci/.venv/bin/python benches/forward_auth.py
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import jwt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("JWTGATE_BIN", os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "jwtgate"))
DUR = int(os.environ.get("DUR", "8"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
SECRET = "forward-auth-bench-secret-0123456789abcdef0123"
TOK = jwt.encode({"sub": "alice", "role": "admin", "exp": int(time.time()) + 7200}, SECRET, algorithm="HS256")
CLK = os.sysconf("SC_CLK_TCK")
UP, INLINE, CHECKS, FRONT, PLAIN = 9301, 9302, 9303, 9304, 9305
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

WORK = tempfile.mkdtemp(prefix="jwtgate-fa-bench-")
os.chmod(WORK, 0o755)  # nginx's workers run as nobody when started as root
os.makedirs(os.path.join(WORK, "tmp"), exist_ok=True)

UP_CONF = f"""pid up.pid; error_log up.err warn; worker_processes 1;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 10000000; keepalive_timeout 75s;
  client_body_temp_path tmp; proxy_temp_path tmp; fastcgi_temp_path tmp; uwsgi_temp_path tmp; scgi_temp_path tmp;
  server {{ listen 127.0.0.1:{UP} backlog=4096; location / {{ return 200 "ok"; }} }} }}
"""

PLAIN_CONF = f"""pid plain.pid; error_log plain.err warn; worker_processes 1;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 10000000;
  client_body_temp_path tmp; proxy_temp_path tmp; fastcgi_temp_path tmp; uwsgi_temp_path tmp; scgi_temp_path tmp;
  upstream app {{ server 127.0.0.1:{UP}; keepalive 64; }}
  server {{ listen 127.0.0.1:{PLAIN} backlog=4096;
    location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }} }} }}
"""

GATE_CONF = f"""[server]
listen = "127.0.0.1:{INLINE}"
workers = 1
[auth]
claim_headers = {{ role = "X-Auth-Role" }}
[forward_auth]
listen = "127.0.0.1:{CHECKS}"
proxy = "nginx"
[[route]]
path = "/"
upstream = "http://127.0.0.1:{UP}"
"""

# wrk sends the check nginx's auth_request would send.
CHECK_LUA = """wrk.method = "GET"
wrk.path = "/"
wrk.headers["X-Original-Method"] = "GET"
wrk.headers["X-Original-URI"] = "/orders/42?x=1"
wrk.headers["X-Forwarded-Host"] = "app.example"
"""


def ticks(pids):
    t = 0
    for p in pids:
        try:
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            t += int(f[11]) + int(f[12])
        except FileNotFoundError:
            pass
    return t


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [pid] + [int(x) for x in out]


def wrk(url, conns, latency=False, script=None):
    args = ["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{DUR}s", "-H", "Authorization: Bearer " + TOK]
    if latency:
        args.append("--latency")
    if script:
        args += ["-s", script]
    out = subprocess.run(args + [url], capture_output=True, text=True).stdout
    n = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        sys.exit(f"{url}: {bad.group(1)} non-2xx answers\n{out}")
    pct = {}
    for p, v, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)$", out, re.M):
        pct[p] = float(v) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]
    return n, pct


def nginx(conf, core):
    path = os.path.join(WORK, conf[0])
    open(path, "w").write(conf[1])
    p = subprocess.Popen(["taskset", "-c", core, NGINX, "-p", WORK + "/", "-c", path, "-e", "stderr", "-g", "daemon off;"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return p


def front_conf():
    text = open(os.path.join(ROOT, "config", "forward-auth", "nginx.conf")).read()
    text = text.replace("127.0.0.1:8080", f"127.0.0.1:{FRONT}").replace("127.0.0.1:8081", f"127.0.0.1:{CHECKS}").replace("127.0.0.1:8000", f"127.0.0.1:{UP}")
    text = text.replace("access_log access.log;", "access_log off;").replace("worker_processes 1;", "worker_processes 1;\nerror_log front.err warn;", 1)
    return ("front.conf", text)


def stop(p):
    p.send_signal(signal.SIGQUIT if "nginx" in " ".join(p.args) else signal.SIGTERM)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def main():
    open(os.path.join(WORK, "check.lua"), "w").write(CHECK_LUA)
    open(os.path.join(WORK, "gate.toml"), "w").write(GATE_CONF)
    up = nginx(("up.conf", UP_CONF), "1")
    env = dict(os.environ, JWT_SECRET_KEY=SECRET, RUST_LOG="warn")
    gate = subprocess.Popen(["taskset", "-c", "0", BIN, "--config", os.path.join(WORK, "gate.toml")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    res = {}
    try:
        for rnd in range(ROUNDS):
            # 1. jwtgate's CPU per check and per inline request.
            for kind, url, script in [("check", f"http://127.0.0.1:{CHECKS}/", os.path.join(WORK, "check.lua")),
                                      ("inline", f"http://127.0.0.1:{INLINE}/orders/42?x=1", None)]:
                wrk(url, 16, script=script)  # warm
                pids = children(gate.pid)
                t0 = ticks(pids)
                n, _ = wrk(url, 64, script=script)
                us = (ticks(pids) - t0) / CLK * 1e6 / n
                res.setdefault(("cpu", kind), []).append((us, n / DUR))
            # 2. End to end: nginx + auth_request + jwtgate, nginx alone, jwtgate inline.
            for kind in ["nginx+jwtgate", "nginx", "jwtgate"]:
                if kind == "nginx+jwtgate":
                    proc = nginx(front_conf(), "0")
                    url = f"http://127.0.0.1:{FRONT}/orders/42?x=1"
                elif kind == "nginx":
                    proc = nginx(("plain.conf", PLAIN_CONF), "0")
                    url = f"http://127.0.0.1:{PLAIN}/orders/42?x=1"
                else:
                    proc, url = None, f"http://127.0.0.1:{INLINE}/orders/42?x=1"
                wrk(url, 16)
                front = children(proc.pid) if proc else []
                gated = children(gate.pid) if kind != "nginx" else []
                f0, g0 = ticks(front), ticks(gated)
                n, _ = wrk(url, 64)
                f_us = (ticks(front) - f0) / CLK * 1e6 / n
                g_us = (ticks(gated) - g0) / CLK * 1e6 / n
                _, pct = wrk(url, 8, latency=True)
                res.setdefault(("e2e", kind), []).append((f_us + g_us, n / DUR, pct.get("50"), pct.get("99"), f_us, g_us))
                if proc:
                    stop(proc)
                time.sleep(0.3)
    finally:
        stop(gate)
        stop(up)
    med = lambda xs: sorted(xs)[len(xs) // 2]
    check = min(u for u, _ in res[("cpu", "check")])
    inline = min(u for u, _ in res[("cpu", "inline")])
    print("jwtgate CPU per request (best of %d rounds, %d s each, 64 connections)" % (ROUNDS, DUR))
    print(f"  check  {check:6.1f} us  ({med([r for _, r in res[('cpu', 'check')]]):.0f} req/s)")
    print(f"  inline {inline:6.1f} us  ({med([r for _, r in res[('cpu', 'inline')]]):.0f} req/s)")
    print(f"  check / inline = {check / inline:.2f}  (the issue asks <= 0.6)")
    print("end to end (CPU of the proxies per request: best; req/s at 64 connections and latency at 8: median)")
    base99 = med([r[3] for r in res[("e2e", "nginx")]])
    for kind in ["nginx", "nginx+jwtgate", "jwtgate"]:
        rows = res[("e2e", kind)]
        p50, p99 = med([r[2] for r in rows]), med([r[3] for r in rows])
        best = min(rows, key=lambda r: r[0])
        print(f"  {kind:14s} {best[0]:6.1f} us/req (nginx {best[4]:5.1f}, jwtgate {best[5]:5.1f})  "
              f"{med([r[1] for r in rows]):7.0f} req/s  "
              f"p50 {p50:6.0f} us  p99 {p99:6.0f} us  (p99 {p99 - base99:+.0f} us vs nginx alone)")


if __name__ == "__main__":
    main()

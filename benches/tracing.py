"""What tracing costs, one pinned core each, in one run (docs/performance.md, "Tracing"):
jwtgate's plain shape (an HS256 token, one route) with tracing off, against the same shape on
the release before tracing and request IDs (BASE_BIN, when given), and with tracing on at 1 %
and at 100 % sampling, exporting over OTLP/HTTP to a collector on loopback (a small Python
server that takes every export and answers 200, on the upstream's core). nginx as a plain
proxy for scale. Everything else is ../shared/bench/peers/bench.py's setup (wrk, 64 keep-alive
connections, an nginx upstream on its own core).

    JWTGATE_BIN=target/release/jwtgate [BASE_BIN=/path/to/old/jwtgate] python3 benches/tracing.py
    env: DUR (8 s), ROUNDS (3), PEERS (../shared/bench/peers), ONLY (a comma-separated subset)

Prints CPU µs per request (best round, the gateway's process: its exporter included),
requests/s (median), the spans exported and dropped in the last round, and the ratio to
jwtgate-off."""
import os
import signal
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.abspath(os.environ.get("PEERS", os.path.join(HERE, "..", "..", "shared", "bench", "peers")))
sys.path.insert(0, PEERS)
import bench  # noqa: E402  (its helpers: pinned start, wrk, CPU ticks; works in a fresh temp dir)

NEW_BIN = bench.BIN
BASE_BIN = os.environ.get("BASE_BIN")

COLLECTOR = r'''
import http.server, socketserver
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
S(("127.0.0.1", 9318), H).serve_forever()
'''

PLAIN = """[server]
listen = "127.0.0.1:9204"
admin_listen = "127.0.0.1:9299"
workers = 1
TELEMETRY
[[route]]
path = "/"
upstream = "http://127.0.0.1:9201"
"""


def traced(ratio):
    return PLAIN.replace("TELEMETRY", f'[telemetry]\notlp_endpoint = "http://127.0.0.1:9318"\nsample_ratio = {ratio}\n')


# (name, binary, config)
TARGETS = [("nginx", None, None)]
if BASE_BIN:
    TARGETS.append(("jwtgate-before", BASE_BIN, PLAIN.replace("TELEMETRY", "")))
TARGETS += [
    ("jwtgate-off", NEW_BIN, PLAIN.replace("TELEMETRY", "")),
    ("jwtgate-1pct", NEW_BIN, traced(0.01)),
    ("jwtgate-100pct", NEW_BIN, traced(1.0)),
]
if os.environ.get("ONLY"):
    only = os.environ["ONLY"].split(",")
    TARGETS = [t for t in TARGETS if t[0] in only]


def spans():
    """(exported, dropped) from the admin listener's metrics."""
    try:
        text = urllib.request.urlopen("http://127.0.0.1:9299/metrics", timeout=2).read().decode()
    except OSError:
        return None
    exported = dropped = 0
    for line in text.splitlines():
        if line.startswith("jwtgate_trace_spans_exported_total"):
            exported = int(float(line.split()[-1]))
        if line.startswith("jwtgate_trace_spans_dropped_total"):
            dropped += int(float(line.split()[-1]))
    return exported, dropped


def main():
    up = subprocess.Popen(["taskset", "-c", "1", "nginx", "-p", os.getcwd() + "/", "-c", "nginx-up.conf", "-g",
                           "daemon off; worker_processes 1;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    collector = subprocess.Popen(["taskset", "-c", "1", sys.executable, "-c", COLLECTOR])
    time.sleep(0.5)
    res, exported = {}, {}
    try:
        for rnd in range(bench.ROUNDS):
            order = TARGETS[rnd % len(TARGETS):] + TARGETS[:rnd % len(TARGETS)]
            for name, binary, config in order:
                kind = "nginx" if binary is None else "jwtgate"
                if binary:
                    bench.BIN = binary
                    open("jwtgate-both.toml", "w").write(config)
                p = bench.start(kind, False)
                url = f"http://127.0.0.1:{bench.PORTS[kind][0]}/"
                check = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                                        "Authorization: Bearer " + bench.TOK, url], capture_output=True, text=True)
                if check.stdout != "200":
                    raise SystemExit(f"{name}: the token got {check.stdout}, not 200")
                subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c16", "-d2s", "-H",
                                "Authorization: Bearer " + bench.TOK, url], capture_output=True)
                pids = bench.children(p.pid)
                t0 = bench.ticks(pids)
                n, errs = bench.wrk(url, False)
                t1 = bench.ticks(pids)
                us = (t1 - t0) / bench.CLK * 1e6 / max(n, 1)
                res.setdefault(name, []).append((us, n / bench.DUR, errs))
                if kind == "jwtgate":
                    time.sleep(1.5)  # the last batch goes out
                    exported[name] = spans()
                p.send_signal(signal.SIGTERM if kind != "nginx" else signal.SIGQUIT)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
                time.sleep(0.3)
    finally:
        up.send_signal(signal.SIGQUIT)
        up.wait()
        collector.kill()
    base = min(u for u, _, _ in res["jwtgate-off"])
    print(f"{'target':16s} {'us/req min':>10s} {'req/s med':>10s} errs {'spans out/dropped':>18s}  vs jwtgate-off")
    for name, _, _ in TARGETS:
        rows = res[name]
        us = min(u for u, _, _ in rows)
        rps = sorted(r for _, r, _ in rows)[len(rows) // 2]
        sp = exported.get(name)
        sp = f"{sp[0]}/{sp[1]}" if sp else "-"
        print(f"{name:16s} {us:10.1f} {rps:10.0f} {sum(e for _, _, e in rows):4d} {sp:>18s}  {us / base:.2f}")


if __name__ == "__main__":
    main()

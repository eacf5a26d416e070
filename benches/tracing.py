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
sys.path.insert(0, HERE)
import measure  # noqa: E402

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
                # After the load, the last batch goes out before the metrics are read.
                after = (lambda: (time.sleep(1.5), spans())[1]) if binary else None
                row, sp = measure.run(name, kind, bench.TOK, after)
                res.setdefault(name, []).append(row)
                if sp:
                    exported[name] = f"{sp[0]}/{sp[1]}"
    finally:
        up.send_signal(signal.SIGQUIT)
        up.wait()
        collector.kill()
    measure.report(res, [t[0] for t in TARGETS], "jwtgate-off", 16, exported)


if __name__ == "__main__":
    main()

"""Throughput of large bodies through HTTP/2 upstreams (the README's "Memory" and the forwarding
issue's "nothing slower"): jwtgate's windows are sized to bound what a client that does not read
can make it hold (256 KiB a call), and this shows that large downloads and 4 MiB gRPC messages
keep their throughput. Each jwtgate binary given runs alone on pinned core 0; the upstreams and
the clients run on core 1:

  * a 256 MiB download from nginx over h2c (`h2c://` route), fetched with curl over HTTP/1.1 and
    over h2c, MB/s, best of ROUNDS; the same file from nginx directly as the reference;
  * unary gRPC calls with a 4 MiB request and a 4 MiB response (grpcio on both sides, `h2c://`
    route, HS256 token), MB/s both ways together, best of ROUNDS; the server directly as the
    reference.

    JWTGATE_BIN=target/release/jwtgate python3 benches/h2_throughput.py
    BASELINE_BIN=/path/to/older/jwtgate JWTGATE_BIN=... python3 benches/h2_throughput.py

env: ROUNDS (3), CALLS (40 gRPC calls a round), PYTHON (with grpcio; default .ci/.venv/bin/python).
Loopback only; it stops what it starts and removes its temp dir."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

from hs256 import SECRET, token

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BIN = os.path.abspath(os.environ.get("JWTGATE_BIN", os.path.join(ROOT, "target", "release", "jwtgate")))
BASELINE = os.environ.get("BASELINE_BIN")
ROUNDS = int(os.environ.get("ROUNDS", "3"))
CALLS = int(os.environ.get("CALLS", "40"))
PYTHON = os.environ.get("PYTHON", os.path.join(ROOT, ".ci", ".venv", "bin", "python"))
NGINX, GRPC, GATEWAY = 9501, 9502, 9504
SIZE = 256 << 20

NGINX_CONF = f"""pid up.pid;
error_log up.err;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path tmp; proxy_temp_path tmp; fastcgi_temp_path tmp; uwsgi_temp_path tmp;
    scgi_temp_path tmp;
    server {{ listen 127.0.0.1:{NGINX} http2; root www; }}
}}
"""

GATEWAY_TOML = f"""[server]
listen = "127.0.0.1:{GATEWAY}"
workers = 1
[[route]]
path = "/big.bin"
upstream = "h2c://127.0.0.1:{NGINX}"
auth = "public"
[[route]]
path = "/bench.Echo"
upstream = "h2c://127.0.0.1:{GRPC}"
"""

GRPC_SERVER = textwrap.dedent(f"""
    import sys, grpc
    from concurrent import futures
    handler = grpc.method_handlers_generic_handler("bench.Echo", {{
        "Big": grpc.unary_unary_rpc_method_handler(lambda req, ctx: req)}})
    opts = [("grpc.max_receive_message_length", 8 << 20), ("grpc.max_send_message_length", 8 << 20)]
    server = grpc.server(futures.ThreadPoolExecutor(4), options=opts)
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port("127.0.0.1:{GRPC}")
    server.start()
    print("ready", flush=True)
    sys.stdin.read()
    server.stop(0)
""")

GRPC_CLIENT = textwrap.dedent("""
    import sys, time, grpc
    target, token, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
    opts = [("grpc.max_receive_message_length", 8 << 20), ("grpc.max_send_message_length", 8 << 20)]
    channel = grpc.insecure_channel(target, options=opts)
    big = channel.unary_unary("/bench.Echo/Big", request_serializer=None, response_deserializer=None)
    payload = bytes(4 << 20)
    md = [("authorization", "Bearer " + token)]
    big(payload, metadata=md, timeout=30)  # warm-up
    start = time.monotonic()
    for _ in range(calls):
        assert len(big(payload, metadata=md, timeout=30)) == len(payload)
    took = time.monotonic() - start
    print(calls * 2 * len(payload) / took / 1e6)
""")



def download(port, proto):
    out = subprocess.run(
        ["taskset", "-c", "1", "curl", "-s", proto, "-o", "/dev/null", "-w", "%{speed_download} %{size_download}",
         f"http://127.0.0.1:{port}/big.bin"], capture_output=True, text=True).stdout.split()
    speed, size = float(out[0]), int(out[1])
    if size != SIZE:
        raise SystemExit(f"download through :{port} ({proto}) got {size} bytes, not {SIZE}")
    return speed / 1e6


def grpc_rate(port, tok):
    out = subprocess.run(["taskset", "-c", "1", PYTHON, "-c", GRPC_CLIENT, f"127.0.0.1:{port}", tok, str(CALLS)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"gRPC calls through :{port} failed:\n{out.stderr}")
    return float(out.stdout.strip())


def measure(port, tok):
    return {
        "download HTTP/1.1": max(download(port, "--http1.1") for _ in range(ROUNDS)),
        "download h2c": max(download(port, "--http2-prior-knowledge") for _ in range(ROUNDS)),
        "gRPC 4 MiB both ways": max(grpc_rate(port, tok) for _ in range(ROUNDS)),
    }


def main():
    work = tempfile.mkdtemp(prefix="jwtgate-h2-throughput-")
    # nginx's worker runs as `nobody` when started as root: it must be able to read www/.
    os.chmod(work, 0o755)
    os.chdir(work)
    os.makedirs("tmp")
    os.makedirs("www")
    with open("www/big.bin", "wb") as f:
        f.truncate(SIZE)
    open("up.conf", "w").write(NGINX_CONF)
    open("jwtgate.toml", "w").write(GATEWAY_TOML)
    tok = token()
    nginx = subprocess.Popen(["taskset", "-c", "1", "nginx", "-p", work + "/", "-c", "up.conf", "-g",
                              "daemon off; worker_processes 1;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = subprocess.Popen(["taskset", "-c", "1", PYTHON, "-c", GRPC_SERVER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    rows = {}
    try:
        server.stdout.readline()
        time.sleep(0.3)
        direct = {
            "download HTTP/1.1": None,
            "download h2c": max(download(NGINX, "--http2-prior-knowledge") for _ in range(ROUNDS)),
            "gRPC 4 MiB both ways": max(grpc_rate(GRPC, tok) for _ in range(ROUNDS)),
        }
        rows["upstream direct"] = direct
        for name, binary in [("baseline", BASELINE), ("jwtgate", BIN)]:
            if not binary:
                continue
            env = dict(os.environ, JWT_SECRET_KEY=SECRET, RUST_LOG="warn")
            gw = subprocess.Popen(["taskset", "-c", "0", binary, "--config", "jwtgate.toml"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                time.sleep(1.0)
                rows[f"{name} ({os.path.basename(binary)})"] = measure(GATEWAY, tok)
            finally:
                gw.send_signal(signal.SIGTERM)
                gw.wait(10)
    finally:
        server.stdin.close()
        server.wait(10)
        nginx.send_signal(signal.SIGQUIT)
        nginx.wait(10)
        os.chdir("/")
        shutil.rmtree(work, ignore_errors=True)
    cols = ["download HTTP/1.1", "download h2c", "gRPC 4 MiB both ways"]
    print(f"{'target':32s} " + " ".join(f"{c + ' MB/s':>24s}" for c in cols))
    for name, r in rows.items():
        print(f"{name:32s} " + " ".join(f"{'-' if r[c] is None else f'{r[c]:.0f}':>24s}" for c in cols))


if __name__ == "__main__":
    if not os.path.exists(BIN):
        sys.exit(f"{BIN}: build it first (cargo build --release)")
    main()

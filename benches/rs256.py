"""RS256 side by side, one pinned core each, in one run (the README's "Identity providers"
figures): HAProxy 2.6 `jwt_verify("RS256", "pub.pem")` against jwtgate with the same public key
as an [[auth.provider]] (`public_key_file`), with its verified-token cache (the default) and
without it (`auth.token_cache = 0`, every request pays the RSA check), and nginx as a plain proxy
for scale. Each target verifies one RS256 token (2048-bit key) on every request over plain HTTP
keep-alive (wrk, 64 connections), the rest of the setup exactly as ../shared/bench/peers/bench.py.

    JWTGATE_BIN=target/release/jwtgate python3 benches/rs256.py      # ~3 min
    env: DUR (8 s), ROUNDS (3), PEERS (../shared/bench/peers)

Prints CPU µs per request (best round), requests/s (median) and the ratio to HAProxy."""
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.abspath(os.environ.get("PEERS", os.path.join(HERE, "..", "..", "shared", "bench", "peers")))
sys.path.insert(0, PEERS)
import bench  # noqa: E402  (its helpers: pinned start, wrk, CPU ticks; works in a fresh temp dir)
import jwt  # noqa: E402

sys.path.insert(0, HERE)
import measure  # noqa: E402

ISSUER = "https://idp.bench"
subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "rs.key"],
               check=True, capture_output=True)
subprocess.run(["openssl", "pkey", "-in", "rs.key", "-pubout", "-out", "rs.pub"], check=True, capture_output=True)
bench.TOK = jwt.encode({"sub": "alice", "iss": ISSUER, "exp": int(time.time()) + 7200},
                       open("rs.key").read(), algorithm="RS256", headers={"kid": "bench"})

# HAProxy: the peers' config with RS256 in place of HS256, the key file loaded at start.
cfg = open("haproxy.cfg").read()
cfg = cfg.replace("-m str HS256", "-m str RS256").replace('jwt_verify("HS256","${JWT_SECRET}")', 'jwt_verify("RS256","rs.pub")')
assert 'jwt_verify("RS256","rs.pub")' in cfg, "the peers' haproxy.cfg changed shape"
open("haproxy.cfg", "w").write(cfg)

JWTGATE = f"""[server]
listen = "127.0.0.1:9204"
workers = 1
[auth]
TOKEN_CACHE
[[auth.provider]]
issuer = "{ISSUER}"
algorithms = ["RS256"]
public_key_file = "rs.pub"
[[route]]
path = "/"
upstream = "http://127.0.0.1:9201"
"""

TARGETS = [
    ("nginx", "nginx", ""),
    ("haproxy-rs256", "haproxy", ""),
    ("jwtgate-rs256", "jwtgate", ""),
    ("jwtgate-rs256-nocache", "jwtgate", "token_cache = 0"),
]


def main():
    up = subprocess.Popen(["taskset", "-c", "1", "nginx", "-p", os.getcwd() + "/", "-c", "nginx-up.conf", "-g",
                           "daemon off; worker_processes 1;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    res = {}
    try:
        for rnd in range(bench.ROUNDS):
            order = TARGETS[rnd % len(TARGETS):] + TARGETS[:rnd % len(TARGETS)]
            for name, kind, cache in order:
                if kind == "jwtgate":
                    open("jwtgate-both.toml", "w").write(JWTGATE.replace("TOKEN_CACHE", cache))
                row, _ = measure.run(name, kind, bench.TOK)
                res.setdefault(name, []).append(row)
    finally:
        up.send_signal(signal.SIGQUIT)
        up.wait()
    measure.report(res, [t[0] for t in TARGETS], "haproxy-rs256", 24)


if __name__ == "__main__":
    main()

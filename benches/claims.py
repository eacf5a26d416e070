"""What claims cost, one pinned core each, in one run (the README's "What claims cost"): jwtgate's
plain shape (an HS256 token with `sub` and `exp`, no claim headers, no assertion) against the
same shape on the release before claim paths (BASE_BIN, when given), and the claims shape: a
Keycloak-like token through two nested claim headers (`realm_access.roles`, `org.id`), a
`require` on an array claim, and the signed assertion (Ed25519) on; also the claims shape
without the assertion, to tell the two apart. nginx as a plain proxy for scale. Everything else
is ../shared/bench/peers/bench.py's setup (wrk, 64 keep-alive connections, an nginx upstream on
its own core).

    JWTGATE_BIN=target/release/jwtgate [BASE_BIN=/path/to/old/jwtgate] python3 benches/claims.py
    env: DUR (8 s), ROUNDS (3), PEERS (../shared/bench/peers), ONLY (a comma-separated subset)

Prints CPU µs per request (best round), requests/s (median) and the ratio to jwtgate-plain."""
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.abspath(os.environ.get("PEERS", os.path.join(HERE, "..", "..", "shared", "bench", "peers")))
sys.path.insert(0, PEERS)
import bench  # noqa: E402  (its helpers: pinned start, wrk, CPU ticks; works in a fresh temp dir)
sys.path.insert(0, HERE)
import measure  # noqa: E402
import jwt  # noqa: E402

NEW_BIN = bench.BIN
BASE_BIN = os.environ.get("BASE_BIN")
subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", "assertion.pem"], check=True, capture_output=True)

PLAIN_TOKEN = bench.TOK
CLAIMS_TOKEN = jwt.encode({"sub": "alice", "exp": int(time.time()) + 7200, "preferred_username": "alice",
                           "realm_access": {"roles": ["user", "admin"]}, "org": {"id": "org-42", "tier": "gold"},
                           "email": "alice@example.com"}, bench.SECRET, algorithm="HS256")

PLAIN = """[server]
listen = "127.0.0.1:9204"
workers = 1
[[route]]
path = "/"
upstream = "http://127.0.0.1:9201"
"""

CLAIMS = """[server]
listen = "127.0.0.1:9204"
admin_listen = "127.0.0.1:9299"
workers = 1
[auth]
claim_headers = { "realm_access.roles" = "X-Auth-Roles", "org.id" = "X-Auth-Org" }
ASSERTION
[[route]]
path = "/"
upstream = "http://127.0.0.1:9201"
require = { "realm_access.roles" = ["admin", "ops"] }
"""
ASSERTION = """[auth.assertion]
key_file = "assertion.pem"
claims = ["email", "realm_access.roles"]
"""

# (name, binary, config, token)
TARGETS = [("nginx", None, None, PLAIN_TOKEN)]
if BASE_BIN:
    TARGETS.append(("jwtgate-before-plain", BASE_BIN, PLAIN, PLAIN_TOKEN))
TARGETS += [
    ("jwtgate-plain", NEW_BIN, PLAIN, PLAIN_TOKEN),
    ("jwtgate-claims-noassert", NEW_BIN, CLAIMS.replace("ASSERTION", ""), CLAIMS_TOKEN),
    ("jwtgate-claims", NEW_BIN, CLAIMS.replace("ASSERTION", ASSERTION), CLAIMS_TOKEN),
]

# ONLY=name,name: just those targets (e.g. an A/B of the plain shape with more rounds).
if os.environ.get("ONLY"):
    only = os.environ["ONLY"].split(",")
    TARGETS = [t for t in TARGETS if t[0] in only]


def main():
    up = subprocess.Popen(["taskset", "-c", "1", "nginx", "-p", os.getcwd() + "/", "-c", "nginx-up.conf", "-g",
                           "daemon off; worker_processes 1;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    res = {}
    try:
        for rnd in range(bench.ROUNDS):
            order = TARGETS[rnd % len(TARGETS):] + TARGETS[:rnd % len(TARGETS)]
            for name, binary, config, token in order:
                kind = "nginx" if binary is None else "jwtgate"
                if binary:
                    bench.BIN = binary
                    open("jwtgate-both.toml", "w").write(config)
                row, _ = measure.run(name, kind, token)
                res.setdefault(name, []).append(row)
    finally:
        up.send_signal(signal.SIGQUIT)
        up.wait()
    measure.report(res, [t[0] for t in TARGETS], "jwtgate-plain", 26)


if __name__ == "__main__":
    main()

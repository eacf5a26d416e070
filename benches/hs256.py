"""The benches' HS256 token: the shared harness's secret (../shared/bench), `{"sub": "alice",
"exp": now + 2 h}`, signed with the standard library only (no PyJWT needed to run a bench)."""
import base64
import hashlib
import hmac
import json
import time

SECRET = "Kq8dKj29mN3pQ7vX2zY9wR5uT8sL6fH4jK2nM9pQ3rT7vY12"


def token(secret=SECRET, sub="alice", ttl=7200):
    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": sub, "exp": int(time.time()) + ttl}).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"

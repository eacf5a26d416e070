"""The identity provider's side of the provider tests, with PyJWT and `cryptography`:

    idp.py keys            one key per algorithm family, as JSON on stdout:
                           {name: {"private_pem", "public_pem", "public_der_b64", "jwk"}}
    idp.py mint            reads [{"key": private_pem, "alg", "kid"?, "claims"}] on stdin,
                           prints one token per line, signed by PyJWT
    idp.py verify          reads [{"token", "key": public_pem, "algorithms", "issuer"}] on stdin,
                           prints "ok" or the error's class name per line: PyJWT's verdict
"""
import base64
import json
import sys

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm


def keys():
    made = {
        "rsa": (rsa.generate_private_key(public_exponent=65537, key_size=2048), RSAAlgorithm),
        "p256": (ec.generate_private_key(ec.SECP256R1()), ECAlgorithm),
        "p384": (ec.generate_private_key(ec.SECP384R1()), ECAlgorithm),
        "ed25519": (ed25519.Ed25519PrivateKey.generate(), OKPAlgorithm),
    }
    out = {}
    for name, (key, algorithm) in made.items():
        public = key.public_key()
        out[name] = {
            "private_pem": key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode(),
            "public_pem": public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ).decode(),
            "public_der_b64": base64.b64encode(
                public.public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            ).decode(),
            "jwk": json.loads(algorithm.to_jwk(public)),
        }
    json.dump(out, sys.stdout)


def mint():
    for job in json.load(sys.stdin):
        headers = {"kid": job["kid"]} if job.get("kid") else None
        print(jwt.encode(job["claims"], job["key"], algorithm=job["alg"], headers=headers))


def verify():
    for job in json.load(sys.stdin):
        try:
            jwt.decode(
                job["token"],
                job["key"],
                algorithms=job["algorithms"],
                issuer=job["issuer"],
                leeway=30,
                options={"require": ["exp", "iss"], "verify_aud": False},
            )
            print("ok")
        except Exception as e:  # noqa: BLE001 (any refusal is a refusal)
            print(type(e).__name__)


{"keys": keys, "mint": mint, "verify": verify}[sys.argv[1]]()

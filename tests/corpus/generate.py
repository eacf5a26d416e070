#!/usr/bin/env python3
"""Writes the differential corpus: requests.jsonl and responses.jsonl, next to this file.

Each line is {"name": ..., "data": ...} (and "head": true for a response to a HEAD request),
"data" being the raw bytes as a Latin-1 string (every byte one character). The inputs are
this project's own, written from the grammar of RFC 9112 and from the classes of inputs that
published request-smuggling research uses (see README.md here); deterministic (seeded), so
that running it again writes the same files.

    python3 tests/corpus/generate.py
"""

import itertools
import json
import pathlib
import random

HERE = pathlib.Path(__file__).parent
rng = random.Random(20261129)

NEXT = "GET /next HTTP/1.1\r\nHost: a\r\n\r\n"
SMUGGLED = "GET /admin HTTP/1.1\r\nHost: a\r\nX-Auth-User: root\r\n\r\n"

requests = []
responses = []


def latin1(data):
    """Characters above U+00FF become their UTF-8 bytes (every other character is one byte)."""
    return "".join(c if ord(c) < 256 else c.encode("utf-8").decode("latin-1") for c in data)


def req(name, data):
    requests.append({"name": name, "data": latin1(data)})


def res(name, data, head=False):
    entry = {"name": name, "data": latin1(data)}
    if head:
        entry["head"] = True
    responses.append(entry)


# --- framing fields: names, values, spacing ---------------------------------------------------

TE_NAMES = [
    "Transfer-Encoding", "transfer-encoding", "TRANSFER-ENCODING", "Transfer-encoding",
    "tRANSFER-eNCODING", "Transfer_Encoding", "Transfer-Encoding ", " Transfer-Encoding",
    "Transfer-Encoding\t", "Transfer Encoding", "X-Transfer-Encoding", "Transfer-Encodings",
]
TE_VALUES = [
    "chunked", "Chunked", "CHUNKED", "cHuNkEd", " chunked", "chunked ", "\tchunked", "chunked\t",
    "  chunked  ", "chunked,", ", chunked", ",chunked", "chunked,,", "chunked, chunked",
    "chunked,chunked", "identity, chunked", "chunked, identity", "gzip, chunked", "chunked, gzip",
    "gzip,chunked", "deflate", "chunked;q=1", "chunked; q=1", '"chunked"', "chunk", "chunkedx",
    "xchunked", "chunked\x00", "chunked\x0b", "chunked\x0c", "ch unked", "chunked\x85", "", " ",
    "identity", "gzip", "cow", "chunked\r\n ", "\x00chunked",
]
SPACINGS = [": ", ":", ":  ", ":\t"]
CHUNKED_BODY = "5\r\nhello\r\n0\r\n\r\n"
CL_LIKE_BODY = "hello"

for name, value, spacing in itertools.product(TE_NAMES, TE_VALUES, SPACINGS[:2]):
    for body_name, body in (("chunked body", CHUNKED_BODY), ("plain body", CL_LIKE_BODY)):
        req(
            f"TE {name!r}{spacing!r}{value!r}, {body_name}, then a request",
            f"POST /te HTTP/1.1\r\nHost: a\r\n{name}{spacing}{value}\r\n\r\n{body}{NEXT}",
        )

CL_NAMES = [
    "Content-Length", "content-length", "CONTENT-LENGTH", "Content-length", "Content_Length",
    "Content-Length ", " Content-Length", "Content Length", "Content-Lengths",
]
CL_VALUES = [
    "5", "05", "00005", "+5", "-5", " 5", "5 ", "5\t", "\t5", "5,5", "5, 5", "5,6", "5 5", "0x5",
    "5.0", "5e0", "", " ", "4", "6", "0", "99999999999999999999", "18446744073709551615",
    "18446744073709551616", "1234567890123456789", "5\x00", "\x355", "٥",
]
for name, value, spacing in itertools.product(CL_NAMES, CL_VALUES, SPACINGS[:2]):
    req(
        f"CL {name!r}{spacing!r}{value!r}, then a request",
        f"POST /cl HTTP/1.1\r\nHost: a\r\n{name}{spacing}{value}\r\n\r\nhello{NEXT}",
    )

# Duplicates and combinations of framing fields.
TE_FEW = ["chunked", "Chunked", "identity", "gzip", "", "chunked, identity", " chunked"]
CL_FEW = ["5", "0", "3", "5, 5", "+5", ""]
for a, b in itertools.product(TE_FEW, repeat=2):
    for body in (CHUNKED_BODY, CL_LIKE_BODY):
        req(
            f"two TE fields {a!r} {b!r}",
            f"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {a}\r\nTransfer-Encoding: {b}\r\n\r\n{body}{NEXT}",
        )
for a, b in itertools.product(CL_FEW, repeat=2):
    req(
        f"two CL fields {a!r} {b!r}",
        f"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {a}\r\nContent-Length: {b}\r\n\r\nhello{NEXT}",
    )
for te, cl in itertools.product(TE_FEW, CL_FEW):
    for body in (CHUNKED_BODY, "0\r\n\r\n" + SMUGGLED, CL_LIKE_BODY):
        req(
            f"TE {te!r} then CL {cl!r}",
            f"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {te}\r\nContent-Length: {cl}\r\n\r\n{body}{NEXT}",
        )
        req(
            f"CL {cl!r} then TE {te!r}",
            f"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {cl}\r\nTransfer-Encoding: {te}\r\n\r\n{body}{NEXT}",
        )

# Framing fields folded over lines, split by bare CR or LF, or hidden in other fields.
for name in ("Transfer-Encoding", "Content-Length"):
    value = "chunked" if name.startswith("T") else "5"
    body = CHUNKED_BODY if name.startswith("T") else CL_LIKE_BODY
    for head in [
        f"X-A: b\r\n {name}: {value}",
        f"X-A: b\r\n\t{name}: {value}",
        f"{name}:\r\n {value}",
        f"{name}:\r\n\t{value}",
        f"X-A: b\r{name}: {value}",
        f"X-A: b\n{name}: {value}",
        f"{name}: {value}\r",
        f"{name}: {value}\n",
        f"X-A: b\r\n\r\n{name}: {value}",
        f"X-{name}: {value}",
        f"{name}-X: {value}",
        f"{name}\x00: {value}",
        f"\x00{name}: {value}",
        f"{name}: {value}\x00",
        f"{name} : {value}",
        f"{name}\t: {value}",
        f"{name}\r\n: {value}",
        f" {name}: {value}",
    ]:
        req(
            f"{name} hidden: {head!r}",
            f"POST / HTTP/1.1\r\nHost: a\r\n{head}\r\n\r\n{body}{NEXT}",
        )

# --- chunked bodies ---------------------------------------------------------------------------

CHUNKED = [
    "0\r\n\r\n", "5\r\nhello\r\n0\r\n\r\n", "5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n",
    "A\r\n0123456789\r\n0\r\n\r\n", "a\r\n0123456789\r\n0\r\n\r\n",
    "05\r\nhello\r\n0\r\n\r\n", "0005\r\nhello\r\n0\r\n\r\n",
    "0000000000000005\r\nhello\r\n0\r\n\r\n", "00000000000000005\r\nhello\r\n0\r\n\r\n",
    "fffffffffffffffff\r\nhello\r\n0\r\n\r\n", "ffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    "-5\r\nhello\r\n0\r\n\r\n", "+5\r\nhello\r\n0\r\n\r\n", "0x5\r\nhello\r\n0\r\n\r\n",
    " 5\r\nhello\r\n0\r\n\r\n", "5 \r\nhello\r\n0\r\n\r\n", "5\t\r\nhello\r\n0\r\n\r\n",
    "5 \t \r\nhello\r\n0\r\n\r\n", "5 ;x\r\nhello\r\n0\r\n\r\n", "5;x\r\nhello\r\n0\r\n\r\n",
    "5;x=y\r\nhello\r\n0\r\n\r\n", '5;x="y z"\r\nhello\r\n0\r\n\r\n', "5;\r\nhello\r\n0\r\n\r\n",
    "5;;\r\nhello\r\n0\r\n\r\n", "5; x\r\nhello\r\n0\r\n\r\n", "5 x\r\nhello\r\n0\r\n\r\n",
    "5 5\r\nhello\r\n0\r\n\r\n", "5x\r\nhello\r\n0\r\n\r\n", "5g\r\nhello\r\n0\r\n\r\n",
    "5;\x00\r\nhello\r\n0\r\n\r\n", "5;a\nb\r\nhello\r\n0\r\n\r\n", "5;a\rb\r\nhello\r\n0\r\n\r\n",
    "5;\x7f\r\nhello\r\n0\r\n\r\n", "5;\x80\r\nhello\r\n0\r\n\r\n",
    "5\nhello\n0\n\n", "5\nhello\r\n0\r\n\r\n", "5\r\nhello\n0\r\n\r\n", "5\r\nhello\r\n0\n\n",
    "5\r\nhello\r\n0\r\n\n", "5\rhello\r\n0\r\n\r\n", "5\r\nhello\r0\r\n\r\n",
    "5\r\nhelloX\r\n0\r\n\r\n", "5\r\nhell\r\n0\r\n\r\n", "5\r\nhello0\r\n\r\n",
    "5\r\nhello\r\n\r\n0\r\n\r\n", "\r\n5\r\nhello\r\n0\r\n\r\n", "5\r\n\r\nhello\r\n0\r\n\r\n",
    "5\r\nhello\r\n0\r\n", "5\r\nhello\r\n0", "5\r\nhello\r\n", "5\r\nhel",
    "0;x\r\n\r\n", "0 \r\n\r\n", "000\r\n\r\n", "0\r\n\r\r\n", "0\r\n\n", "0\n\r\n",
    "0\r\nX: y\r\n\r\n", "0\r\nX:y\r\n\r\n", "0\r\nX: y\r\nZ: w\r\n\r\n", "0\r\nX : y\r\n\r\n",
    "0\r\n: y\r\n\r\n", "0\r\nX\r\n\r\n", "0\r\nX: y\n\r\n", "0\r\nX: y\nZ: w\r\n\r\n",
    "0\r\n X: y\r\n\r\n", "0\r\nX: y\r\n z\r\n\r\n", "0\r\nX: y\x00\r\n\r\n",
    "0\r\nX: y\x80\r\n\r\n", "0\r\nX\x80: y\r\n\r\n", "0\r\nX(: y\r\n\r\n",
    "0\r\nContent-Length: 5\r\n\r\nhello", "0\r\nTransfer-Encoding: chunked\r\n\r\n",
    "0\r\nX-Auth-User: root\r\n\r\n", "0\r\nX: y\r\n",
    "0\r\n" + "X: y\r\n" * 63 + "\r\n", "0\r\n" + "X: y\r\n" * 64 + "\r\n",
    "0\r\n" + "X: y\r\n" * 65 + "\r\n", "0\r\n" + "X: y\r\n" * 101 + "\r\n",
    "0\r\nX: " + "v" * 16000 + "\r\n\r\n", "0\r\nX: " + "v" * 17000 + "\r\n\r\n",
    "1;" + "e" * 4000 + "\r\na\r\n0\r\n\r\n", "1;" + "e" * 5000 + "\r\na\r\n0\r\n\r\n",
    ("1;" + "e" * 2000 + "\r\na\r\n") * 3 + "0\r\n\r\n",
    ("1;" + "e" * 6000 + "\r\na\r\n") * 3 + "0\r\n\r\n",
    "".join(f"1\r\n{c}\r\n" for c in "abcdefghij") + "0\r\n\r\n",
    "3\r\nabc\r\n0\r\n\r\n" + SMUGGLED, "0\r\n\r\n" + SMUGGLED,
    "2e\r\n" + SMUGGLED[:46] + "\r\n0\r\n\r\n",
]
for i, body in enumerate(CHUNKED):
    for tail in ("", NEXT):
        req(
            f"chunked body {i}: {body[:40]!r}",
            f"POST /chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{body}{tail}",
        )

# --- request lines ----------------------------------------------------------------------------

METHODS = ["GET", "POST", "HEAD", "OPTIONS", "DELETE", "PATCH", "PUT", "get", "Get", "G-E_T",
           "GET!", "M" * 40, "PRI", "CONNECT", "TRACE", "G\x00T", "GE T", "GET\t"]
TARGETS = ["/", "/a", "/a?b=c", "/a?b=c&d", "*", "http://a/b", "HTTP://A:80/b", "https://a/b",
           "http://a", "http://a?x", "a:80", "a.example:443", "/a b", "/a\tb", "/a#b", "/a<b",
           "/a>b", "/a`b", '/a"b', '/?a"b', "/?a`b", "/{x}|y", "/%00", "/%zz", "//a", "/\xe4",
           "a/b", "?x", "", "/" + "p" * 9000, "/\x7f", "/a\\b", "http://u@a/b", "http:///b",
           "ftp://a/b", "/a;b", "/.%2e/x", "/a/../b"]
VERSIONS = ["HTTP/1.1", "HTTP/1.0", "HTTP/1.2", "HTTP/2.0", "HTTP/0.9", "http/1.1", "HTTP/1",
            "HTTP/11", "HTTP/1.1 ", "HTTP/1.01", "HTTP /1.1", "HTTP/1.1\t", ""]
for m in METHODS:
    req(f"method {m!r}", f"{m} / HTTP/1.1\r\nHost: a\r\n\r\n{NEXT}")
for t in TARGETS:
    req(f"target {t[:40]!r}", f"GET {t} HTTP/1.1\r\nHost: a\r\n\r\n{NEXT}")
    req(f"target {t[:40]!r} OPTIONS", f"OPTIONS {t} HTTP/1.1\r\nHost: a\r\n\r\n")
for v in VERSIONS:
    req(f"version {v!r}", f"GET / {v}\r\nHost: a\r\n\r\n{NEXT}")
for sep1, sep2 in itertools.product([" ", "  ", "\t", " \t"], repeat=2):
    req(f"separators {sep1!r} {sep2!r}", f"GET{sep1}/{sep2}HTTP/1.1\r\nHost: a\r\n\r\n")
for ending in ["\r\n", "\n", "\r", "\n\r"]:
    req(f"line ending {ending!r}", f"GET / HTTP/1.1{ending}Host: a{ending}{ending}{NEXT}")
    req(
        f"line ending {ending!r} with a body",
        f"POST / HTTP/1.1{ending}Host: a{ending}Content-Length: 5{ending}{ending}hello{NEXT}",
    )

# --- header field syntax ----------------------------------------------------------------------

FIELDS = [
    "X: y", "X:y", "X:  y", "X:\ty", "X: y ", "X: y\t", "X :y", "X\t:y", ":y", "X", "X:",
    "X: ", "X: y\x00z", "X: y\rz", "X: y\x7f", "X: y\x80", "X: y\xff", "X\x80: y", "X y: z",
    "X(: y", "X): y", "X,: y", "X/: y", "X@: y", "X{: y", 'X": y', "X\x01: y", "X: \x01",
    "X: y\r\n z", "X: y\r\n\tz", "X: y\r\n", "\x00X: y", "X-Auth-User: root", "x_auth_user: root",
    "Host: b", "Host: ", "Host: a b", "Host: a/b", "Expect: 100-continue",
    "Connection: close", "Connection: keep-alive", "Connection: upgrade", "Upgrade: websocket",
    "Content-Length: 0", "Transfer-Encoding: chunked", "X: " + "v" * 20000,
]
for f in FIELDS:
    req(f"field {f[:30]!r}", f"GET / HTTP/1.1\r\nHost: a\r\n{f}\r\n\r\n{NEXT}")
    req(f"field {f[:30]!r} first", f"GET / HTTP/1.1\r\n{f}\r\nHost: a\r\n\r\n")
for n in (98, 99, 100, 101, 150):
    fields = "".join(f"X-{i}: v\r\n" for i in range(n))
    req(f"{n} fields", f"GET / HTTP/1.1\r\n{fields}\r\n{NEXT}")
for size in (8000, 16000, 16383, 16384, 16385, 17000):
    pad = "X: " + "v" * max(0, size - 40) + "\r\n"
    req(f"head of about {size} bytes", f"GET / HTTP/1.1\r\nHost: a\r\n{pad}\r\n")

# --- empty lines, connections, pipelining ------------------------------------------------------

for k in range(0, 12):
    for line in ("\r\n", "\n"):
        req(f"{k} empty lines {line!r}", line * k + f"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    req(f"{k} empty lines after a body", f"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" + "\r\n" * k + NEXT)
req("a bare CR before the request", "\rGET / HTTP/1.1\r\nHost: a\r\n\r\n")
req("a space before the request", " GET / HTTP/1.1\r\nHost: a\r\n\r\n")

CONNECTIONS = [
    ("HTTP/1.0", ""), ("HTTP/1.0", "Connection: keep-alive\r\n"), ("HTTP/1.0", "Connection: Keep-Alive\r\n"),
    ("HTTP/1.1", "Connection: close\r\n"), ("HTTP/1.1", "Connection: Close\r\n"),
    ("HTTP/1.1", "Connection: keep-alive, close\r\n"), ("HTTP/1.1", "Connection: closed\r\n"),
    ("HTTP/1.1", "Connection: x, close\r\n"), ("HTTP/1.1", "Connection:close\r\n"),
    ("HTTP/1.1", "Connection: close\r\nConnection: keep-alive\r\n"), ("HTTP/1.1", "Connection: c\xe9lose\r\n"),
    ("HTTP/1.1", "Upgrade: websocket\r\nConnection: Upgrade\r\n"), ("HTTP/1.1", "Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"),
]
for version, fields in CONNECTIONS:
    for body in ("", "Content-Length: 5\r\n"):
        payload = "hello" if body else ""
        req(
            f"{version} {fields!r}{body!r}, then a request",
            f"POST / {version}\r\nHost: a\r\n{fields}{body}\r\n{payload}{NEXT}",
        )
req("Expect: 100-continue with a body", f"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello{NEXT}")
req("a CONNECT, then a request", f"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n{NEXT}")

# Classic smuggling shapes (CL.TE, TE.CL, TE.TE with an obfuscated second field), each with a
# smuggled request in the body.
SHAPES = {
    "CL.TE": f"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG{NEXT}",
    "TE.CL": f"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n5c\r\n{SMUGGLED}\r\n0\r\n\r\n",
    "CL.CL": f"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: {len(SMUGGLED)}\r\n\r\n{SMUGGLED}",
    "CL.0": f"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {len(SMUGGLED)}\r\n\r\n{SMUGGLED}{NEXT}",
    "0.CL": f"GET / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n 7\r\n\r\nGET /a {NEXT}",
    "TE in HTTP/1.0": f"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n0\r\n\r\n{SMUGGLED}",
    "chunk extension LF": f"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2;\n{SMUGGLED[:0]}xx\r\n0\r\n\r\n{NEXT}",
    "TERM.EXT": f"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2;\nxx\r\n45\r\n0\r\n\r\n{SMUGGLED}",
    "EXT.TERM": f"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2;\r\nxx\r\n22\r\nx\n0\r\n\r\n{SMUGGLED}\r\n0\r\n\r\n",
    "bare LF chunk": f"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n{SMUGGLED}",
    "oversized chunk": f"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000a\r\n{SMUGGLED}\r\n0\r\n\r\n",
}
for te2 in TE_VALUES:
    SHAPES[f"TE.TE {te2!r}"] = (
        f"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: {te2}\r\n"
        f"Content-Length: 4\r\n\r\n5c\r\n{SMUGGLED}\r\n0\r\n\r\n"
    )
for name, data in SHAPES.items():
    req(f"smuggling {name}", data)
    req(f"smuggling {name}, then a request", data + NEXT)

# --- random mutations of well-formed requests ---------------------------------------------------

SEEDS = [
    f"GET /a?b=c HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer x.y.z\r\n\r\n{NEXT}",
    f"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello{NEXT}",
    f"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{CHUNKED[2]}{NEXT}",
    f"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nT: v\r\n\r\n{NEXT}",
    f"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n{NEXT}",
    f"PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc{NEXT}",
]
ALPHABET = ["\r", "\n", " ", "\t", ":", ",", ";", "0", "5", "a", "f", "\x00", "\x80", "-", "_", "\"", "\r\n"]


def mutate(seed):
    """1 to 3 random insertions, deletions or replacements of framing-significant characters."""
    data = list(seed)
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(data))
        op = rng.randrange(3)
        if op == 0:
            data.insert(at, rng.choice(ALPHABET))
        elif op == 1 and len(data) > 1:
            del data[at]
        else:
            data[at] = rng.choice(ALPHABET)
    return "".join(data)


for seed_index, seed in enumerate(SEEDS):
    for i in range(400):
        req(f"mutation {seed_index}.{i}", mutate(seed))

# --- responses ---------------------------------------------------------------------------------

STATUS_LINES = [
    "HTTP/1.1 200 OK", "HTTP/1.1 200", "HTTP/1.1 200 ", "HTTP/1.1 200 O K", "HTTP/1.1 200 \xe9",
    "HTTP/1.0 200 OK", "HTTP/1.2 200 OK", "HTTP/2.0 200 OK", "http/1.1 200 OK", "HTTP/1.1 20 OK",
    "HTTP/1.1 2000 OK", "HTTP/1.1 099 X", "HTTP/1.1 599 X", "HTTP/1.1 600 X", "HTTP/1.1 999 X",
    "HTTP/1.1 abc X", "HTTP/1.1  200 OK", "HTTP/1.1\t200 OK", "HTTP/1.1 200\tOK", "HTTP/1.1 204 No Content",
    "HTTP/1.1 205 Reset", "HTTP/1.1 304 Not Modified", "HTTP/1.1 404 Not Found", "HTTP/1.1 500 X",
]
for line in STATUS_LINES:
    for framing, body in [("Content-Length: 5\r\n", "hello"), ("Transfer-Encoding: chunked\r\n", CHUNKED_BODY), ("", "until close")]:
        res(f"status {line!r} {framing!r}", f"{line}\r\n{framing}\r\n{body}")
        res(f"status {line!r} {framing!r} to HEAD", f"{line}\r\n{framing}\r\n", head=True)

for name, value, spacing in itertools.product(TE_NAMES, TE_VALUES, SPACINGS[:2]):
    res(
        f"response TE {name!r}{spacing!r}{value!r}",
        f"HTTP/1.1 200 OK\r\n{name}{spacing}{value}\r\n\r\n{CHUNKED_BODY}",
    )
for name, value in itertools.product(CL_NAMES, CL_VALUES):
    res(f"response CL {name!r}: {value!r}", f"HTTP/1.1 200 OK\r\n{name}: {value}\r\n\r\nhello world")
for te, cl in itertools.product(TE_FEW, CL_FEW):
    res(f"response TE {te!r} and CL {cl!r}", f"HTTP/1.1 200 OK\r\nTransfer-Encoding: {te}\r\nContent-Length: {cl}\r\n\r\n{CHUNKED_BODY}")
    res(f"HTTP/1.0 response TE {te!r} and CL {cl!r}", f"HTTP/1.0 200 OK\r\nTransfer-Encoding: {te}\r\nContent-Length: {cl}\r\n\r\n{CHUNKED_BODY}")
for a, b in itertools.product(CL_FEW, repeat=2):
    res(f"response two CL {a!r} {b!r}", f"HTTP/1.1 200 OK\r\nContent-Length: {a}\r\nContent-Length: {b}\r\n\r\nhello")
for i, body in enumerate(CHUNKED):
    res(f"response chunked body {i}", f"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{body}")
for f in FIELDS:
    res(f"response field {f[:30]!r}", f"HTTP/1.1 200 OK\r\n{f}\r\nContent-Length: 2\r\n\r\nok")
for n in (99, 100, 101):
    fields = "".join(f"X-{i}: v\r\n" for i in range(n))
    res(f"response with {n} fields", f"HTTP/1.1 200 OK\r\n{fields}Content-Length: 2\r\n\r\nok")
for interim in ["HTTP/1.1 100 Continue\r\n\r\n", "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
                "HTTP/1.1 102 Processing\r\n\r\n", "HTTP/1.1 199 X\r\n\r\n", "HTTP/1.1 101 Switching\r\nUpgrade: x\r\n\r\n",
                "HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n", "HTTP/1.1 100 Continue\r\n\r\n" * 3]:
    res(f"interim {interim[:30]!r}", f"{interim}HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
for ending in ["\r\n", "\n", "\r"]:
    res(f"response line ending {ending!r}", f"HTTP/1.1 200 OK{ending}Content-Length: 2{ending}{ending}ok")
for short in ["HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n",
              "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", "HTTP/1.1 200", "", "garbage\r\n\r\n",
              "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA"]:
    res(f"response cut or padded {short[:30]!r}", short)
RESPONSE_SEEDS = [
    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhello",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nT: v\r\n\r\n",
    "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close",
    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nX: y\r\n\r\n",
]
for seed_index, seed in enumerate(RESPONSE_SEEDS):
    for i in range(250):
        res(f"response mutation {seed_index}.{i}", mutate(seed), head=(i % 5 == 0))


def write(name, entries):
    with open(HERE / name, "w", encoding="ascii") as f:
        for e in entries:
            f.write(json.dumps(e, ensure_ascii=True) + "\n")


write("requests.jsonl", requests)
write("responses.jsonl", responses)
print(f"{len(requests)} requests, {len(responses)} responses")

"""A gRPC client (grpcio) for tests/grpc.rs: makes the unary calls given as JSON on stdin,
[{"case", "method", "token"?}], against the gateway at argv[1] (h2c), and prints one JSON line
per call: {"case", "code", "details"}."""
import json
import sys

import grpc

channel = grpc.insecure_channel(sys.argv[1])
for call in json.load(sys.stdin):
    stub = channel.unary_unary(call["method"], request_serializer=None, response_deserializer=None)
    metadata = [("authorization", "Bearer " + call["token"])] if call.get("token") else None
    try:
        stub(b"\x00", metadata=metadata, timeout=10)
        code, details = "OK", ""
    except grpc.RpcError as e:
        code, details = e.code().name, e.details()
    print(json.dumps({"case": call["case"], "code": code, "details": details}), flush=True)

"""An Envoy ext_authz gRPC client (grpcio, with stubs compiled from the repository's proto/ by
grpcio-tools at start) for tests/ext_authz_grpc.rs: makes the Check calls given as JSON on stdin,
[{"case", "method", "host", "path", "headers": {name: value}, "raw"?: bool}], against argv[1]
(h2c), and prints one JSON line per call: {"case", "code" (the call's), "status" (the
CheckResponse's google.rpc.Status code), "kind" ("ok" | "denied" | null), "http_status",
"headers" ({name: value}), "append" ([...]), "append_action" ([...]), "remove" ([...]), "body"}.
With "raw", the headers go in header_map (Envoy's encode_raw_headers) instead of the map."""
import importlib.resources
import json
import os
import sys
import tempfile

import grpc
from grpc_tools import protoc

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto")
out = tempfile.mkdtemp(prefix="ext_authz_py")
well_known = str(importlib.resources.files("grpc_tools") / "_proto")
protos = []
for d, _, files in os.walk(root):
    protos += [os.path.relpath(os.path.join(d, f), root) for f in files if f.endswith(".proto")]
rc = protoc.main(["protoc", "-I" + root, "-I" + well_known, "--python_out=" + out, "--grpc_python_out=" + out] + protos)
if rc != 0:
    sys.exit("protoc failed")
sys.path.insert(0, out)

from envoy.service.auth.v3 import external_auth_pb2 as pb  # noqa: E402
from envoy.service.auth.v3 import external_auth_pb2_grpc as pb_grpc  # noqa: E402
from envoy.config.core.v3 import base_pb2  # noqa: E402

channel = grpc.insecure_channel(sys.argv[1])
stub = pb_grpc.AuthorizationStub(channel)
for call in json.load(sys.stdin):
    req = pb.CheckRequest()
    http = req.attributes.request.http
    http.method = call["method"]
    http.host = call["host"]
    http.path = call["path"]
    http.scheme = "http"
    http.protocol = "HTTP/1.1"
    headers = dict(call.get("headers", {}))
    # Envoy puts the pseudo-headers in the map too.
    headers.update({":method": call["method"], ":path": call["path"], ":authority": call["host"]})
    if call.get("raw"):
        for k, v in headers.items():
            http.header_map.headers.append(base_pb2.HeaderValue(key=k, raw_value=v.encode()))
    else:
        for k, v in headers.items():
            http.headers[k] = v
    line = {"case": call["case"], "code": "OK", "status": None, "kind": None, "http_status": None,
            "headers": {}, "append": [], "append_action": [], "remove": [], "body": ""}
    try:
        res = stub.Check(req, timeout=10)
        line["status"] = res.status.code
        kind = res.WhichOneof("http_response")
        if kind == "ok_response":
            line["kind"] = "ok"
            options = res.ok_response.headers
            line["remove"] = list(res.ok_response.headers_to_remove)
        elif kind == "denied_response":
            line["kind"] = "denied"
            options = res.denied_response.headers
            line["http_status"] = res.denied_response.status.code
            line["body"] = res.denied_response.body
        else:
            options = []
        for o in options:
            line["headers"][o.header.key] = o.header.value
            line["append"].append(o.append.value if o.HasField("append") else None)
            line["append_action"].append(base_pb2.HeaderValueOption.HeaderAppendAction.Name(o.append_action))
    except grpc.RpcError as e:
        line["code"] = e.code().name
    print(json.dumps(line), flush=True)

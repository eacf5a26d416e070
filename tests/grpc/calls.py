"""Calls through the gateway for tests/grpc.rs (grpcio): reads [{"case", "kind", "method",
"token"?, "size"?, "metadata"?}] on stdin, prints one JSON line per call: the code, details,
response messages (as text) and trailing metadata."""
import json
import sys

import grpc

channel = grpc.insecure_channel(sys.argv[1], options=[
    ("grpc.max_receive_message_length", 16 << 20), ("grpc.max_send_message_length", 16 << 20)])
for call in json.load(sys.stdin):
    # `-bin` metadata is bytes in grpcio.
    metadata = [(k, v.encode() if k.endswith("-bin") else v) for k, v in call.get("metadata", [])]
    if call.get("token"):
        metadata.append(("authorization", "Bearer " + call["token"]))
    payload = b"x" * call.get("size", 1)
    out = {"case": call["case"], "code": "OK", "details": "", "messages": [], "trailing": {}}
    try:
        if call["kind"] == "unary":
            stub = channel.unary_unary(call["method"])
            response, c = stub.with_call(payload, metadata=metadata, timeout=10)
            out["messages"] = [response.decode()]
            out["trailing"] = dict(c.trailing_metadata() or ())
        elif call["kind"] == "stream":
            stub = channel.unary_stream(call["method"])
            it = stub(payload, metadata=metadata, timeout=10)
            out["messages"] = [m.decode() for m in it]
            out["trailing"] = dict(it.trailing_metadata() or ())
        elif call["kind"] == "client_stream":
            stub = channel.stream_unary(call["method"])
            response = stub(iter([b"a" * 1000] * call.get("count", 10)), metadata=metadata, timeout=10)
            out["messages"] = [response.decode()]
        elif call["kind"] == "bidi":
            stub = channel.stream_stream(call["method"])
            it = stub(iter([b"m%d" % i for i in range(call.get("count", 5))]), metadata=metadata, timeout=10)
            out["messages"] = [m.decode() for m in it]
        elif call["kind"] == "deadline":
            stub = channel.unary_unary(call["method"])
            out["messages"] = [stub(payload, metadata=metadata, timeout=call["timeout"]).decode()]
        elif call["kind"] == "cancel":
            import time
            stub = channel.unary_unary(call["method"])
            future = stub.future(payload, metadata=metadata, timeout=30)
            time.sleep(0.5)
            future.cancel()
            out["code"] = "CANCELLED" if future.cancelled() else "NOT_CANCELLED"
            time.sleep(0.5)
        elif call["kind"] == "sequence":
            # `threads` clients, each making `count` calls one after another, `pause` apart.
            import threading
            import time
            stub = channel.unary_unary(call["method"])
            failures, peers = [], set()

            def client():
                for _ in range(call["count"]):
                    try:
                        peers.add(json.loads(stub(payload, metadata=metadata, timeout=10))["peer"])
                    except grpc.RpcError as e:
                        failures.append(f"{e.code().name}: {e.details()}")
                    time.sleep(call["pause"])
            threads = [threading.Thread(target=client) for _ in range(call["threads"])]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            out["messages"] = [str(call["threads"] * call["count"] - len(failures))]
            out["details"] = "; ".join(failures[:5])
            # The connections the calls came over (the server's view of the gateway).
            out["trailing"] = {"connections": len(peers)}
        elif call["kind"] == "concurrent":
            stub = channel.unary_unary(call["method"])
            futures = [stub.future(payload, metadata=metadata, timeout=30) for _ in range(call["count"])]
            results = [f.result() for f in futures]
            out["messages"] = [str(len(results))]
    except grpc.RpcError as e:
        out["code"], out["details"] = e.code().name, e.details()
        out["trailing"] = {k: (v if isinstance(v, str) else v.hex()) for k, v in (e.trailing_metadata() or ())}
    print(json.dumps(out), flush=True)

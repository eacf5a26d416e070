"""A gRPC upstream (grpcio, raw bytes) for tests/grpc.rs: test.Echo/Unary answers with what it
received (the identity metadata, the payload's length) and a trailing metadata entry,
test.Echo/ServerStream sends three messages, test.Echo/ClientStream counts what it got,
test.Echo/Bidi echoes each message, test.Echo/Slow answers after 2 s (and says how much of the
deadline it saw), test.Echo/Fail aborts with NOT_FOUND "gone", test.Echo/Die sends one message and kills the
server, test.Echo/Wait waits until the call ends (and counts it when the client cancelled),
test.Echo/Stats reports that count.
With GRPC_MAX_CONNECTION_AGE_MS set, connections older than that get GOAWAY.
Prints {"port": N} once listening; stops when stdin closes."""
import json
import os
import sys
from concurrent import futures

import grpc


def unary(request, context):
    md = context.invocation_metadata()

    def every(key):
        return [v if isinstance(v, str) else v.hex() for k, v in md if k == key]

    context.set_trailing_metadata((("x-trail", "t1"),))
    return json.dumps({"user": every("x-auth-user"), "user_bin": every("x-auth-user-bin"),
                       "role": every("x-auth-role"), "len": len(request),
                       "peer": context.peer()}).encode()


def server_stream(request, context):
    for i in range(3):
        yield f"part{i}".encode()


def client_stream(requests, context):
    parts = [r for r in requests]
    return json.dumps({"count": len(parts), "bytes": sum(len(p) for p in parts)}).encode()


def bidi(requests, context):
    for r in requests:
        yield b"echo:" + r


def slow(request, context):
    import time
    remaining = context.time_remaining()
    time.sleep(2)
    return json.dumps({"remaining": remaining}).encode()


CANCELLED = []


def wait(request, context):
    import threading
    done = threading.Event()
    context.add_callback(done.set)
    done.wait(10)
    if not context.is_active():
        CANCELLED.append(1)
    return b"late"


def stats(request, context):
    return json.dumps({"cancelled": len(CANCELLED)}).encode()


def die(request, context):
    import os
    import time
    yield b"first"
    time.sleep(0.3)
    os._exit(1)


def fail(request, context):
    context.set_trailing_metadata((("x-why", "testing"),))
    context.abort(grpc.StatusCode.NOT_FOUND, "gone")


options = [("grpc.max_receive_message_length", 16 << 20), ("grpc.max_send_message_length", 16 << 20)]
if os.environ.get("GRPC_MAX_CONNECTION_AGE_MS"):
    # Connections older than this get GOAWAY (calls in flight may finish for 10 s).
    options += [("grpc.max_connection_age_ms", int(os.environ["GRPC_MAX_CONNECTION_AGE_MS"])),
                ("grpc.max_connection_age_grace_ms", 10000)]
server = grpc.server(futures.ThreadPoolExecutor(32), options=options)
server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", {
    "Unary": grpc.unary_unary_rpc_method_handler(unary),
    "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
    "Fail": grpc.unary_unary_rpc_method_handler(fail),
    "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
    "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
    "Slow": grpc.unary_unary_rpc_method_handler(slow),
    "Die": grpc.unary_stream_rpc_method_handler(die),
    "Wait": grpc.unary_unary_rpc_method_handler(wait),
    "Stats": grpc.unary_unary_rpc_method_handler(stats),
}),))
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(json.dumps({"port": port}), flush=True)
sys.stdin.read()
server.stop(0)

#!/usr/bin/env python3
"""A real gRPC server and client (grpcio, generic handlers, raw bytes: no protoc) for
tests/grpc.rs.

  grpc_peer.py server NAME [CERT KEY]
      Serves fulcrum.test.Echo on 127.0.0.1 (TLS with ALPN h2 when CERT and KEY are given)
      and prints "port N" once listening. Methods:
        Unary         answers NAME:REQUEST with trailing metadata x-served-by: NAME;
                      a request "fail" is aborted with NOT_FOUND "no such thing";
                      "sleep:MS" answers after MS milliseconds.
        ServerStream  request "COUNT,GAP_MS": COUNT messages "NAME:i", GAP_MS apart;
                      "hang": one message, then silence until the call ends.
        ClientStream  answers NAME: and every request joined by "+".
        Bidi          answers each request with NAME:REQUEST.
  grpc_peer.py client TARGET KIND REQUEST... [--ca CERT] [--timeout SECS] [--method PATH]
      Makes one call (KIND: unary, server, client, bidi; --method calls another path with
      KIND's shape; a request "pause:MS" of a client or bidi stream is a silence of MS
      milliseconds, not a message) and prints each response message
      as "msg TEXT" as it arrives, then one line "end" + JSON {code, details, trailing}.
"""
import json
import sys
import threading
import time
from concurrent import futures

import grpc

SERVICE = "fulcrum.test.Echo"


def serve(name, cert=None, key=None):
    stop = threading.Event()

    def unary(request, context):
        context.set_trailing_metadata((("x-served-by", name),))
        if request == b"fail":
            context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        if request.startswith(b"sleep:"):
            time.sleep(int(request[6:]) / 1000)
        return name.encode() + b":" + request

    def server_stream(request, context):
        if request == b"hang":
            yield name.encode() + b":0"
            while context.is_active() and not stop.is_set():
                time.sleep(0.05)
            return
        count, gap_ms = (int(x) for x in request.split(b","))
        for i in range(count):
            if i:
                time.sleep(gap_ms / 1000)
            yield f"{name}:{i}".encode()
        context.set_trailing_metadata((("x-served-by", name),))

    def client_stream(requests, context):
        return name.encode() + b":" + b"+".join(requests)

    def bidi(requests, context):
        for r in requests:
            yield name.encode() + b":" + r

    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        },
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=32), options=[("grpc.so_reuseport", 0)]
    )
    server.add_generic_rpc_handlers((handler,))
    if cert:
        with open(cert, "rb") as c, open(key, "rb") as k:
            creds = grpc.ssl_server_credentials(((k.read(), c.read()),))
        port = server.add_secure_port("127.0.0.1:0", creds)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"port {port}", flush=True)
    try:
        server.wait_for_termination()
    finally:
        stop.set()


def call(target, kind, requests, ca=None, timeout=20.0, method=None):
    options = [("grpc.enable_http_proxy", 0), ("grpc.enable_retries", 0)]
    if ca:
        with open(ca, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        options.append(("grpc.ssl_target_name_override", "localhost"))
        channel = grpc.secure_channel(target, creds, options=options)
    else:
        channel = grpc.insecure_channel(target, options=options)
    reqs = [r.encode() for r in requests]

    def stream():
        # A request "pause:MS" is no message: the client stays silent for MS milliseconds.
        for r in reqs:
            if r.startswith(b"pause:"):
                time.sleep(int(r[6:]) / 1000)
            else:
                yield r
    names = {"unary": "Unary", "server": "ServerStream", "client": "ClientStream", "bidi": "Bidi"}
    path = method or f"/{SERVICE}/{names[kind]}"
    code, details, trailing = "OK", "", ()
    try:
        if kind == "unary":
            resp, c = channel.unary_unary(path).with_call(reqs[0], timeout=timeout)
            print("msg " + resp.decode(), flush=True)
            trailing = c.trailing_metadata()
        elif kind == "client":
            resp, c = channel.stream_unary(path).with_call(stream(), timeout=timeout)
            print("msg " + resp.decode(), flush=True)
            trailing = c.trailing_metadata()
        else:
            if kind == "server":
                it = channel.unary_stream(path)(reqs[0], timeout=timeout)
            else:
                it = channel.stream_stream(path)(stream(), timeout=timeout)
            for resp in it:
                print("msg " + resp.decode(), flush=True)
            trailing = it.trailing_metadata()
    except grpc.RpcError as e:
        code, details, trailing = e.code().name, e.details() or "", e.trailing_metadata() or ()
    result = {"code": code, "details": details, "trailing": {k: v for k, v in trailing}}
    print("end " + json.dumps(result), flush=True)
    channel.close()


def main(argv):
    if argv[1] == "server":
        serve(*argv[2:5])
        return
    target, kind, rest = argv[2], argv[3], argv[4:]
    ca, timeout, method, requests = None, 20.0, None, []
    i = 0
    while i < len(rest):
        if rest[i] == "--ca":
            ca = rest[i + 1]
            i += 2
        elif rest[i] == "--method":
            method = rest[i + 1]
            i += 2
        elif rest[i] == "--timeout":
            timeout = float(rest[i + 1])
            i += 2
        else:
            requests.append(rest[i])
            i += 1
    call(target, kind, requests, ca, timeout, method)


if __name__ == "__main__":
    main(sys.argv)

#!/usr/bin/env python3
"""A real gRPC server and client (grpcio, generic handlers, raw bytes: no protoc) for
tests/grpc.rs.

  grpc_peer.py server NAME [CERT KEY] [--port N] [--health FILE]
      Serves fulcrum.test.Echo on 127.0.0.1 (TLS with ALPN h2 when CERT and KEY are given;
      on port N, else on a free port) and prints "port N" once listening. With --health, also
      serves grpc.health.v1.Health/Check for the server as a whole (service ""): FILE holds
      SERVING or NOT_SERVING and is read for every call (an empty file, as seen halfway
      through a rewrite, keeps the last status); another service is answered NOT_FOUND.
      Methods of fulcrum.test.Echo:
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

from grpc_health_server import encode_response, requested_service

SERVICE = "fulcrum.test.Echo"

# grpc.health.v1.HealthCheckResponse.ServingStatus values the --health file may name.
SERVING_STATUSES = {"SERVING": 1, "NOT_SERVING": 2}


def health_handler(path):
    """grpc.health.v1.Health/Check answering the status named in the file at `path`."""
    last = ["SERVING"]

    def check(request, context):
        if requested_service(request) != "":
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        with open(path, encoding="utf-8") as f:
            word = f.read().strip()
        if word:
            last[0] = word
        return encode_response(SERVING_STATUSES.get(last[0], 0))

    return grpc.method_handlers_generic_handler(
        "grpc.health.v1.Health", {"Check": grpc.unary_unary_rpc_method_handler(check)}
    )


def serve(name, cert=None, key=None, port=0, health=None):
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
    if health:
        server.add_generic_rpc_handlers((health_handler(health),))
    addr = f"127.0.0.1:{port}"
    if cert:
        with open(cert, "rb") as c, open(key, "rb") as k:
            creds = grpc.ssl_server_credentials(((k.read(), c.read()),))
        bound = server.add_secure_port(addr, creds)
    else:
        bound = server.add_insecure_port(addr)
    if bound == 0 or (port and bound != port):
        sys.exit(f"cannot listen on {addr}")
    port = bound
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
        args, port, health = argv[2:], 0, None
        while "--port" in args or "--health" in args:
            flag = "--port" if "--port" in args else "--health"
            i = args.index(flag)
            value = args[i + 1]
            del args[i : i + 2]
            if flag == "--port":
                port = int(value)
            else:
                health = value
        serve(*args[:3], port=port, health=health)
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

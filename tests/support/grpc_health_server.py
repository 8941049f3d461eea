#!/usr/bin/env python3
"""A real gRPC server (grpcio) that serves only grpc.health.v1.Health/Check, for tests.

Usage: grpc_health_server.py PORT CONTROL_FILE [CERT_PEM KEY_PEM]

CONTROL_FILE holds a JSON object from service name ("" = the server as a whole) to a
ServingStatus number (0 UNKNOWN, 1 SERVING, 2 NOT_SERVING, 3 SERVICE_UNKNOWN). It is read
again for every call, so a test flips a status by rewriting the file (write a temporary file
and rename it over the old one). A service not in the file is answered NOT_FOUND, as the
standard health service does. No protoc and no generated code: the two messages are
encoded and decoded by hand, and grpc's generic handlers pass raw bytes.

With CERT_PEM and KEY_PEM it serves TLS (grpc offers ALPN h2), else plaintext HTTP/2.

Prints "ready" on stdout once it listens on 127.0.0.1:PORT; runs until killed.
"""

import json
import sys
import threading
from concurrent import futures

import grpc


def read_varint(buf, pos):
    """A protobuf varint at pos: (value, next position)."""
    value, shift = 0, 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("bad varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def requested_service(request):
    """The `service` (field 1) of a HealthCheckRequest; "" when absent."""
    service, pos = "", 0
    while pos < len(request):
        key, pos = read_varint(request, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = read_varint(request, pos)
        elif wire == 2:
            length, pos = read_varint(request, pos)
            if field == 1:
                service = request[pos : pos + length].decode("utf-8")
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError("bad wire type")
    return service


def encode_response(status):
    """A HealthCheckResponse{status}; proto3 leaves out a zero status."""
    if status == 0:
        return b""
    out = bytearray([0x08])
    while status >= 0x80:
        out.append((status & 0x7F) | 0x80)
        status >>= 7
    out.append(status)
    return bytes(out)


def main():
    port, control = int(sys.argv[1]), sys.argv[2]

    def check(request, context):
        try:
            service = requested_service(request)
        except (ValueError, UnicodeDecodeError):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed request")
        with open(control, encoding="utf-8") as f:
            statuses = json.load(f)
        if service not in statuses:
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return encode_response(int(statuses[service]))

    handler = grpc.method_handlers_generic_handler(
        "grpc.health.v1.Health",
        {"Check": grpc.unary_unary_rpc_method_handler(check)},
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    addr = f"127.0.0.1:{port}"
    if len(sys.argv) > 4:
        with open(sys.argv[3], "rb") as c, open(sys.argv[4], "rb") as k:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        bound = server.add_secure_port(addr, creds)
    else:
        bound = server.add_insecure_port(addr)
    if bound != port:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    server.start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()

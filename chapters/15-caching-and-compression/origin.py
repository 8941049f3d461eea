#!/usr/bin/env python3
"""The slow origin of chapter 15: it says how its answers may be cached, and counts requests.

GET /static/app.js   200, 6 KiB of JavaScript, Cache-Control: max-age=60, an ETag
GET /static/logo.png 200, 3 KiB of PNG bytes, Cache-Control: max-age=60
GET /news            200, Cache-Control: max-age=1, ETag "v1": answers 304 to If-None-Match "v1"
GET /slow            200 after 1 second, Cache-Control: max-age=60
GET /me              200, Cache-Control: private (one user's page)
GET /hits            how many requests each path got (not counted itself)

Usage: origin.py PORT
"""
import http.server
import sys
import threading
import time

HITS = {}
LOCK = threading.Lock()
APP_JS = b"".join(b"export function f%d(x) { return x * %d; }\n" % (i, i) for i in range(150))
LOGO = bytes(range(256)) * 12


class Origin(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, headers, body=b""):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/hits":
            with LOCK:
                text = "".join(f"{p} {n}\n" for p, n in sorted(HITS.items()))
            return self.answer(200, [("Content-Type", "text/plain")], text.encode())
        with LOCK:
            HITS[path] = HITS.get(path, 0) + 1
        if path == "/static/app.js":
            return self.answer(200, [("Content-Type", "text/javascript"),
                                     ("Cache-Control", "max-age=60"), ("ETag", '"app-1"')], APP_JS)
        if path == "/static/logo.png":
            return self.answer(200, [("Content-Type", "image/png"),
                                     ("Cache-Control", "max-age=60")], LOGO)
        if path == "/news":
            headers = [("Cache-Control", "max-age=1"), ("ETag", '"v1"')]
            if self.headers.get("If-None-Match") == '"v1"':
                return self.answer(304, headers)
            return self.answer(200, headers + [("Content-Type", "text/plain")], b"today's news\n")
        if path == "/slow":
            time.sleep(1)
            return self.answer(200, [("Content-Type", "text/plain"),
                                     ("Cache-Control", "max-age=60")], b"worth the wait\n")
        if path == "/me":
            return self.answer(200, [("Content-Type", "text/plain"),
                                     ("Cache-Control", "private")], b"your account\n")
        return self.answer(404, [("Content-Type", "text/plain")], b"not found\n")

    do_HEAD = do_GET


http.server.ThreadingHTTPServer.daemon_threads = True
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Origin).serve_forever()

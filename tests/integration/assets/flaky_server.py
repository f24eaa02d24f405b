"""A web service whose behaviour a test steers through a file (Debian's python3, no deps).

Usage: flaky_server.py PORT MODE_FILE. The file holds one word, read on every request:
  ok      answer 200
  error   answer 500
  hang    accept the connection and never reply
  closed  stop listening (the port closes while the process lives on)
"""

import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, MODE_FILE = int(sys.argv[1]), sys.argv[2]


def mode() -> str:
    try:
        with open(MODE_FILE) as handle:
            return handle.read().strip() or "ok"
    except OSError:
        return "ok"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        current = mode()
        if current == "hang":
            time.sleep(3600)
            return
        code = 500 if current == "error" else 200
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


server = None
while True:
    wanted_open = mode() != "closed"
    if wanted_open and server is None:
        server = Server(("127.0.0.1", PORT), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    elif not wanted_open and server is not None:
        server.shutdown()
        server.server_close()
        server = None
    time.sleep(0.05)

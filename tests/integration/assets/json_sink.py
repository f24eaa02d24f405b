"""An HTTP receiver for apprise's json:// in tests: each POST body becomes a file in DIR.

Usage (Debian's python3): json_sink.py PORT DIR
"""

import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

PORT, OUT = int(sys.argv[1]), Path(sys.argv[2])


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        OUT.mkdir(parents=True, exist_ok=True)
        tmp = OUT / f".{uuid.uuid4().hex}"
        tmp.write_bytes(body)
        tmp.rename(OUT / f"{time.time():.6f}-{uuid.uuid4().hex[:6]}.json")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


HTTPServer(("127.0.0.1", PORT), Handler).serve_forever()

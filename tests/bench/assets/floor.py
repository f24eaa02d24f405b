"""The kernel's floor for one check, measured by a bare client (Debian's python3).

Usage: floor.py PORT COUNT MODE, MODE fresh (connect, GET, read, close each time) or
keepalive (one connection, COUNT GETs). Prints {"sys_us": .., "user_us": ..} per
request: the kernel's share (sys) is the floor any prober pays; user is this client's.
"""

import json
import os
import socket
import sys

PORT, COUNT, MODE = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
REQUEST = b"GET /999999 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def ask(sock: socket.socket) -> None:
    sock.sendall(REQUEST)
    seen = b""
    while not seen.endswith(b"ok"):
        chunk = sock.recv(4096)
        if not chunk:
            raise SystemExit("server closed")
        seen += chunk


before = os.times()
if MODE == "keepalive":
    with socket.create_connection(("127.0.0.1", PORT)) as sock:
        for _ in range(COUNT):
            ask(sock)
else:
    for _ in range(COUNT):
        with socket.create_connection(("127.0.0.1", PORT)) as sock:
            ask(sock)
after = os.times()
print(
    json.dumps(
        {
            "sys_us": 1e6 * (after.system - before.system) / COUNT,
            "user_us": 1e6 * (after.user - before.user) / COUNT,
        }
    )
)

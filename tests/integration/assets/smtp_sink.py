"""An SMTP server for tests: every message it accepts becomes a file in DIR.

Usage (the project's venv, which has aiosmtpd): smtp_sink.py PORT DIR
"""

import sys
import time
import uuid
from pathlib import Path

from aiosmtpd.controller import Controller

PORT, OUT = int(sys.argv[1]), Path(sys.argv[2])


def save(content: bytes) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = OUT / f".{uuid.uuid4().hex}"
    tmp.write_bytes(content)
    tmp.rename(OUT / f"{time.time():.6f}-{uuid.uuid4().hex[:6]}.eml")


class Sink:
    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        save(envelope.content)  # type: ignore[attr-defined]  # small files, a test's sink
        return "250 OK"


controller = Controller(Sink(), hostname="127.0.0.1", port=PORT)
controller.start()
try:
    while True:
        time.sleep(3600)
finally:
    controller.stop()

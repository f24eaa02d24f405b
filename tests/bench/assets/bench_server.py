"""HTTP/1.1 keep-alive server for the benchmarks (Debian's python3, asyncio, no deps).

Usage: bench_server.py PORT HUNG [close]. GET /N answers 200 "ok", except for N < HUNG,
whose requests are accepted and never answered. A bare TCP connect is accepted too.
With `close`, every answer says Connection: close and the connection is closed.
"""

import asyncio
import sys

PORT, HUNG = int(sys.argv[1]), int(sys.argv[2])
CLOSE = sys.argv[3:] == ["close"]
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n"
    + (b"Connection: close\r\n" if CLOSE else b"")
    + b"\r\nok"
)


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].strip(b"/")
            if path.isdigit() and int(path) < HUNG:
                await reader.read()  # hold the connection until the client gives up
                return
            writer.write(RESPONSE)
            await writer.drain()
            if CLOSE:
                return
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", PORT, backlog=4096)
    async with server:
        await server.serve_forever()


asyncio.run(main())

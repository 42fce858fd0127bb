"""The lab's workloads: one process holding a TCP server in every pod that has one.

``python -m interkube.lab.agent SERVERS.json READY`` opens, for each entry ``{"netns",
"address", "port", "reply"}``, a listening socket inside that network namespace (``setns`` to
it, socket, bind, back), then serves them all from one event loop: each connection is sent its
``reply`` line (``<cluster>/<pod>``, so a client knows which pod it reached) and closed. One
process instead of one per pod keeps `lab up` fast. It writes READY once every socket listens,
and stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
from pathlib import Path

from interkube.lab.netns import socket_in


def _listen(netns: str, address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket_in(netns, family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def _serve(entries: list[dict[str, str | int]], ready: Path) -> None:
    servers = []
    for entry in entries:
        reply = f"{entry['reply']}\n".encode()

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, reply: bytes = reply) -> None:
            writer.write(reply)
            try:
                await writer.drain()
            finally:
                writer.close()

        sock = _listen(str(entry["netns"]), str(entry["address"]), int(entry["port"]))
        servers.append(await asyncio.start_server(answer, sock=sock))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ready.write_text("ready\n")
    await stop.wait()
    for server in servers:
        server.close()


def main(argv: list[str]) -> int:
    servers, ready = Path(argv[0]), Path(argv[1])
    asyncio.run(_serve(json.loads(servers.read_text()), ready))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

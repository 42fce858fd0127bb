"""TCP and UDP servers that say which address answered: ``python -m testkit.l4echo tcp:IP:PORT udp:IP:PORT ...``.

Run inside a "pod" namespace by the proxy tests. TCP: on connect the server writes
``LOCAL_IP LOCAL_PORT PEER_IP\\n``, then answers each line with ``LOCAL_IP LINE``. UDP: each
datagram is answered with ``LOCAL_IP LOCAL_PORT PEER_IP``. (IPv6 addresses are written bare.)
Prints ``ready`` once every socket listens.
"""

from __future__ import annotations

import asyncio
import socket
import sys


def _split(spec: str) -> tuple[str, str, int]:
    proto, rest = spec.split(":", 1)
    host, port = rest.rsplit(":", 1)
    return proto, host.strip("[]"), int(port)


async def _tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    local = writer.get_extra_info("sockname")
    peer = writer.get_extra_info("peername")
    writer.write(f"{local[0]} {local[1]} {peer[0]}\n".encode())
    try:
        while line := await reader.readline():
            writer.write(f"{local[0]} ".encode() + line)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


class _Udp(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]
        self.local = transport.get_extra_info("sockname")

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(f"{self.local[0]} {self.local[1]} {addr[0]}".encode(), addr)


async def main(specs: list[str]) -> None:
    loop = asyncio.get_running_loop()
    keep: list[object] = []
    for spec in specs:
        proto, host, port = _split(spec)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        if proto == "tcp":
            keep.append(await asyncio.start_server(_tcp, host, port, family=family, reuse_address=True))
        else:
            transport, _ = await loop.create_datagram_endpoint(_Udp, local_addr=(host, port), family=family)
            keep.append(transport)
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))

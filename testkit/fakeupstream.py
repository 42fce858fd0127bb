"""A scriptable upstream DNS server on loopback (UDP and TCP) for fault-injection tests.

Real processes (dnsmasq, unbound) show that interkube interoperates; this one shows what happens
when an upstream misbehaves on cue: answers late, goes silent, truncates every UDP answer,
answers with a chosen rcode. It runs in the test's event loop and counts what it receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ssl as ssl_module
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import cast

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from interkube.pkg.framing import FrameReader, frame


@dataclass
class Behaviour:
    """How the fake answers; tests change these fields while it runs."""

    records: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (name, type) -> rdata
    ttl: int = 30
    rcode: dns.rcode.Rcode | None = None  # force this rcode (e.g. dns.rcode.NXDOMAIN)
    delay: float = 0.0                  # seconds before answering
    gate: asyncio.Event | None = None   # answers wait until it is set (in flight until the test says)
    silent: bool = False                # never answer
    truncate_udp: bool = False          # answer UDP with TC=1 and no records
    close_after: int | None = None      # TCP: close a connection once it answered this many (dnsmasq: 100)
    custom: Callable[[dns.message.Message], dns.message.Message | None] | None = None


class FakeUpstream:
    """Start with ``await FakeUpstream().start()``; stop with ``await fake.stop()``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, ssl: ssl_module.SSLContext | None = None) -> None:
        self.host = host
        self.port = port
        self.ssl = ssl  # the TCP side speaks TLS with this server context
        self.behaviour = Behaviour()
        self.queries: list[tuple[str, dns.message.Message]] = []  # (proto, query)
        self.tcp_connections = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def answer(self, query: dns.message.Message, proto: str) -> dns.message.Message | None:
        b = self.behaviour
        if b.silent:
            return None
        if b.custom is not None:
            return b.custom(query)
        resp = dns.message.make_response(query)
        resp.flags |= dns.flags.AA
        if proto == "udp" and b.truncate_udp:
            resp.flags |= dns.flags.TC
            return resp
        if b.rcode is not None:
            resp.set_rcode(b.rcode)
            return resp
        q = query.question[0]
        key = (q.name.to_text().lower(), dns.rdatatype.to_text(q.rdtype))
        rdatas = b.records.get(key)
        if rdatas:
            resp.answer.append(dns.rrset.from_text_list(q.name, b.ttl, "IN", key[1], rdatas))
        elif not any(name == key[0] for name, _ in b.records):
            resp.set_rcode(dns.rcode.NXDOMAIN)
        return resp

    async def _respond(self, data: bytes, proto: str, send: Callable[[bytes], None]) -> None:
        try:
            query = dns.message.from_wire(data)
        except Exception:  # garbage in: say nothing, as a real server might
            return
        self.queries.append((proto, query))
        if self.behaviour.delay:
            await asyncio.sleep(self.behaviour.delay)
        if self.behaviour.gate is not None:
            await self.behaviour.gate.wait()
        resp = self.answer(query, proto)
        if resp is not None:
            send(resp.to_wire())

    def _spawn(self, coro) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self) -> FakeUpstream:
        loop = asyncio.get_running_loop()
        fake = self

        class Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = cast(asyncio.DatagramTransport, transport)  # what a datagram endpoint gets

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                fake._spawn(fake._respond(data, "udp", lambda b: self.transport.sendto(b, addr)))

        class Tcp(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = cast(asyncio.Transport, transport)  # what a stream server gets
                self.frames = FrameReader()
                self.taken = self.answered = 0
                fake.tcp_connections += 1
                if fake.behaviour.close_after == 0:
                    self.transport.close()

            def data_received(self, data: bytes) -> None:
                self.frames.feed(data)
                limit = fake.behaviour.close_after
                for msg in self.frames.take():
                    self.taken += 1
                    if limit is not None and self.taken > limit:
                        continue  # past the limit: as unread, it goes unanswered
                    fake._spawn(fake._respond(msg, "tcp", self.send))

            def send(self, answer: bytes) -> None:
                if not self.transport.is_closing():
                    self.transport.write(frame(answer))
                    self.answered += 1
                    if self.answered == fake.behaviour.close_after:
                        self.transport.close()

        chosen = self.port
        for attempt in range(20):
            self._tcp = await loop.create_server(Tcp, self.host, chosen, ssl=self.ssl)
            self.port = self._tcp.sockets[0].getsockname()[1]
            try:
                self._udp, _ = await loop.create_datagram_endpoint(Udp, local_addr=(self.host, self.port))
                return self
            except OSError as exc:
                # A free TCP port whose UDP twin another process holds (tests run side by side
                # on this machine): try another, unless the caller asked for this one.
                self._tcp.close()
                await self._tcp.wait_closed()
                self._tcp = None
                if chosen or exc.errno != errno.EADDRINUSE or attempt == 19:
                    raise
        raise AssertionError("unreachable")  # (the last attempt returns or raises)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
            self._tcp = None

    def count(self, proto: str | None = None) -> int:
        return sum(1 for p, _ in self.queries if proto is None or p == proto)


@contextlib.contextmanager
def in_thread(behaviour: Behaviour | None = None) -> Iterator[FakeUpstream]:
    """A FakeUpstream with its own event loop in a thread, for tests whose servers are processes
    started by synchronous fixtures (the test's own loop does not run while those start)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-upstream", daemon=True)
    thread.start()
    fake = FakeUpstream()
    if behaviour is not None:
        fake.behaviour = behaviour
    try:
        asyncio.run_coroutine_threadsafe(fake.start(), loop).result(10)
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


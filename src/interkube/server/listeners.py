"""UDP and TCP listeners (TLS reuses the TCP one with an SSL context).

Each listener holds a reference to a :class:`Dispatcher`, which a reload swaps in one assignment:
queries already on the slow path finish on the chain they started with.

TCP follows RFC 7766: two-byte length framing, several queries in flight per connection and
answered as they complete (possibly out of order), an idle timeout, a cap on connections, and
back-pressure per connection so that a client that does not read its answers only stalls itself.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from interkube.dns.wire import FLAG_QR, HEADER_LEN, parse_query
from interkube.errors import ListenerError
from interkube.pkg import datagrams
from interkube.pkg.framing import FrameReader, length_prefix
from interkube.plugin.request import Request
from interkube.server.dispatch import Dispatcher
from interkube.tlsutil.stream import TlsServerProtocol

log = logging.getLogger("interkube.server")

#: Slow-path queries in flight per UDP socket before new ones are dropped (a flood must not
#: grow memory without bound; CoreDNS bounds this with max_concurrent in forward).
MAX_UDP_INFLIGHT = 10_000
#: Queries in flight on one TCP connection before we stop reading from it.
MAX_TCP_PIPELINE = 128
#: Bytes queued for a client that does not read before we stop reading its queries.
TCP_WRITE_HIGH_WATER = 256 * 1024
#: Connections the kernel completes before the server accepts them.
TCP_BACKLOG = 1024


@dataclass
class ListenerOptions:
    tcp_idle_timeout: float = 10.0
    max_tcp_connections: int = 1024
    reuse_port: bool = False


class ListenerStats:
    """Counters the metrics plugin reads (plain ints on the hot path)."""

    __slots__ = ("dropped_udp", "tcp_refused", "tcp_idle_closed")

    def __init__(self) -> None:
        self.dropped_udp = 0
        self.tcp_refused = 0
        self.tcp_idle_closed = 0


#: Batched recvmmsg/sendmmsg (see _udpfast.c), or None for the pure-Python loop.
_udpfast = datagrams.udpfast

#: Batches of datagrams read per wake-up before yielding to the event loop (fairness with TCP).
UDP_ROUNDS = 8


class UdpEndpoint:
    """A UDP socket served from a reader callback that drains it on every wake-up.

    Not an asyncio DatagramProtocol: that costs an event-loop dispatch and two system calls per
    datagram. Here each wake-up reads everything queued (in batches of 64 with the C helper, or
    one by one in Python without it), answers fast-path queries in the same pass, and hands the
    rest to tasks.
    """

    def __init__(self, listener: Listener, sock: socket.socket) -> None:
        self.listener = listener
        self.sock = sock
        self.fd = sock.fileno()
        self.inflight: set[asyncio.Task[None]] = set()
        self.closed = False
        self._loop = asyncio.get_running_loop()
        self.outbox = datagrams.Outbox(sock, self._loop, _dropped)
        self._loop.add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        if _udpfast is not None:
            try:
                _udpfast.drain(self.fd, self.handle, UDP_ROUNDS)
            except OSError as exc:
                log.debug("udp receive error on %s: %s", self.listener, exc)
            return
        recv = self.sock.recvfrom
        send = self.sock.sendto
        for _ in range(UDP_ROUNDS * 64):
            try:
                data, addr = recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("udp receive error on %s: %s", self.listener, exc)
                return
            resp = self.handle(data, addr)
            if resp:
                try:
                    send(resp, addr)
                except OSError:
                    pass  # a full buffer or a refused address: UDP drops, as the network would

    def handle(self, data: bytes, addr: Any) -> bytes | None:
        """The fast-path answer to one datagram, or None (nothing now; maybe later)."""
        # Below a header, or a response (QR=1): drop without a word (never answer a response;
        # it could be a reflection loop).
        if len(data) < HEADER_LEN or data[2] & 0x80:
            return None
        dispatcher = self.listener.dispatcher
        q = parse_query(data)
        if q is not None:
            req = Request(data, q, addr, "udp")
            resp = dispatcher.fast(req)
            if resp is not None:
                return resp
        if len(self.inflight) >= MAX_UDP_INFLIGHT:
            self.listener.stats.dropped_udp += 1
            return None
        answer = dispatcher.serve(req) if q is not None else dispatcher.serve_unparsed(data, addr, "udp")
        task = self._loop.create_task(self._slow(answer, addr))
        self.inflight.add(task)
        task.add_done_callback(self.inflight.discard)
        return None

    async def _slow(self, answer: Coroutine[Any, Any, bytes | None], addr: Any) -> None:
        resp = await answer
        if resp and not self.closed:
            # Answers finished in one event-loop pass leave together (one sendmmsg).
            self.outbox.put((resp, addr))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._loop.remove_reader(self.fd)
            self.sock.close()


def _dropped(exc: OSError) -> None:
    """A batch of UDP answers not sent (a full buffer, a refused address): dropped, as the
    network would drop them; the clients ask again."""
    log.debug("udp answers not sent: %s", exc)


class TcpProtocol(asyncio.Protocol):
    """One TCP (or TLS) connection: framing, pipelining, idle timeout, back-pressure."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.frames = FrameReader()
        self.inflight: set[asyncio.Task[None]] = set()
        self.peer: Any = None
        self.idle_handle: asyncio.TimerHandle | None = None
        self.reading_paused = False
        self.writing_paused = False
        self.outbuf: list[bytes] | None = None
        self.proto = "tls" if listener.ssl_context is not None else "tcp"

    # -- lifecycle ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream: asyncio.Transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport
        self.transport = stream
        self.peer = transport.get_extra_info("peername")
        conns = self.listener.connections
        if len(conns) >= self.listener.options.max_tcp_connections:
            self.listener.stats.tcp_refused += 1
            transport.close()
            return
        conns.add(self)
        stream.set_write_buffer_limits(high=TCP_WRITE_HIGH_WATER)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.listener.connections.discard(self)
        if self.idle_handle is not None:
            self.idle_handle.cancel()
        for task in list(self.inflight):
            task.cancel()
        self.transport = None

    def _arm_idle(self) -> None:
        if self.idle_handle is not None:
            self.idle_handle.cancel()
        loop = asyncio.get_running_loop()
        self.idle_handle = loop.call_later(self.listener.options.tcp_idle_timeout, self._idle)

    def _idle(self) -> None:
        # Idle means nothing asked and nothing owed; a connection still owed answers, or one
        # whose client does not read, gets closed too once the timeout passes with no progress.
        if self.transport is not None:
            self.listener.stats.tcp_idle_closed += 1
            self.transport.close()

    # -- input ----------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        frames = self.frames
        frames.feed(data)
        self._arm_idle()
        # Each message taken may start a slow-path task: take no more than the pipeline has room
        # for (a length prefix that lies only waits for the idle timeout).
        while not self.reading_paused:
            messages = frames.take(MAX_TCP_PIPELINE - len(self.inflight))
            if not messages:
                break
            for msg in messages:
                self._handle(msg)
        self._update_reading()

    def _handle(self, msg: bytes) -> None:
        if len(msg) < HEADER_LEN or msg[2] & (FLAG_QR >> 8):
            return  # not a query: skip this frame, the framing itself is still sound
        dispatcher = self.listener.dispatcher
        q = parse_query(msg)
        if q is not None:
            req = Request(msg, q, self.peer, self.proto)
            resp = dispatcher.fast(req)
            if resp is not None:
                if resp:
                    self._send(resp)
                return
            answer = dispatcher.serve(req)
        else:
            answer = dispatcher.serve_unparsed(msg, self.peer, self.proto)
        task = asyncio.get_running_loop().create_task(self._slow(answer))
        self.inflight.add(task)
        task.add_done_callback(self._done)

    async def _slow(self, answer: Coroutine[Any, Any, bytes | None]) -> None:
        resp = await answer
        if resp is not None:
            self._send(resp)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.inflight.discard(task)
        if self.reading_paused:
            self._update_reading()
            if not self.reading_paused and self.frames:
                self.data_received(b"")

    def _send(self, resp: bytes) -> None:
        # Answers produced in one pass of the event loop leave in one write: a pipelining client
        # sends dozens of queries per segment, and a write (a system call, and for TLS a record)
        # per answer cost more than answering them.
        if self.outbuf is None:
            self.outbuf = []
            asyncio.get_running_loop().call_soon(self._flush)
        self.outbuf.append(length_prefix(resp))
        self.outbuf.append(resp)

    def _flush(self) -> None:
        out, self.outbuf = self.outbuf, None
        t = self.transport
        if out and t is not None and not t.is_closing():
            t.write(b"".join(out))
            self._arm_idle()

    # -- back-pressure ------------------------------------------------------------------------

    def pause_writing(self) -> None:
        self.writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._update_reading()
        if not self.reading_paused and self.frames:
            self.data_received(b"")

    def _update_reading(self) -> None:
        t = self.transport
        if t is None:
            return
        should_pause = self.writing_paused or len(self.inflight) >= MAX_TCP_PIPELINE
        if should_pause and not self.reading_paused:
            self.reading_paused = True
            t.pause_reading()
        elif not should_pause and self.reading_paused:
            self.reading_paused = False
            t.resume_reading()


def _make_socket(host: str, port: int, kind: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            # The wildcard "::" serves IPv4 too (as Go's ":53" does); a specific v6 address only v6.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if host == "::" else 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def wildcard_host() -> str:
    """The all-interfaces address: "::" (dual-stack) where IPv6 works, else "0.0.0.0"."""
    if not socket.has_ipv6:
        return "0.0.0.0"
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            s.bind(("::", 0))
        return "::"
    except OSError:
        return "0.0.0.0"


class Listener:
    """The sockets for one (transport, address, port): UDP+TCP for dns://, TCP+TLS for tls://."""

    def __init__(self, transport: str, host: str, port: int, dispatcher: Dispatcher,
                 options: ListenerOptions | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.transport = transport
        self.host = host
        self.port = port
        self.dispatcher = dispatcher
        self.options = options or ListenerOptions()
        self.ssl_context = ssl_context
        self.stats = ListenerStats()
        self.connections: set[TcpProtocol] = set()
        self._udp: UdpEndpoint | None = None
        self._tcp: asyncio.base_events.Server | None = None
        #: Sockets bound but not yet served (TCP first, then UDP for dns://); see bind().
        self._bound: list[socket.socket] = []

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.transport, self.host, self.port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}://{host}:{self.port}"

    async def start(self) -> None:
        """Bind and serve at once (a configuration calls bind() on all its listeners first)."""
        self.bind()
        await self.serve()

    def bind(self) -> None:
        """Open, bind and listen on the sockets without serving them: until serve(), a datagram
        waits in the socket's buffer and a connection in the backlog, and stop() drops them
        unanswered. Every error of an address in use or not local happens here."""
        socks: list[socket.socket] = []
        try:
            tcp_sock = _make_socket(self.host, self.port, socket.SOCK_STREAM, self.options.reuse_port)
            socks.append(tcp_sock)
            tcp_sock.listen(TCP_BACKLOG)  # listen() too can find the address in use
            if self.port == 0:  # ephemeral: UDP takes the port TCP got
                self.port = tcp_sock.getsockname()[1]
            if self.transport == "dns":
                socks.append(_make_socket(self.host, self.port, socket.SOCK_DGRAM, self.options.reuse_port))
        except OSError as exc:
            for sock in socks:
                sock.close()
            raise ListenerError(f"cannot listen on {self}: {exc.strerror or exc}") from exc
        self._bound = socks

    async def serve(self) -> None:
        """Answer on the sockets bind() opened (binding them now if it was not called)."""
        if not self._bound:
            self.bind()
        tcp_sock, *udp = self._bound
        self._bound = []
        loop = asyncio.get_running_loop()
        try:
            if udp:
                self._udp = UdpEndpoint(self, udp[0])
            factory = self._tls_connection if self.ssl_context is not None else lambda: TcpProtocol(self)
            self._tcp = await loop.create_server(factory, sock=tcp_sock, backlog=TCP_BACKLOG)
        except OSError as exc:
            await self.stop()
            for sock in (tcp_sock, *udp):  # those not yet handed over (closing twice is harmless)
                sock.close()
            raise ListenerError(f"cannot listen on {self}: {exc.strerror or exc}") from exc

    def _tls_connection(self) -> asyncio.Protocol:
        # TLS in interkube's own layer rather than asyncio's ssl=: a refused handshake gets its
        # alert and a log line, and each connection takes the ssl_context of now, so that a
        # reload's certificates apply to new connections (asyncio keeps the first context).
        assert self.ssl_context is not None
        return TlsServerProtocol(self.ssl_context, TcpProtocol(self), label=str(self),
                                 handshake_timeout=self.options.tcp_idle_timeout)

    async def stop(self) -> None:
        for sock in self._bound:
            sock.close()
        self._bound = []
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            for conn in list(self.connections):
                if conn.transport is not None:
                    conn.transport.close()
            await self._tcp.wait_closed()
            self._tcp = None

"""Sending queries to one upstream: over UDP, or over a pipelined TCP/TLS stream.

Both exchangers multiplex: every query gets a fresh random ID on the way out, and the answer is
matched back by that ID *and* by its question, so an answer that does not belong to a pending
query (late, spoofed, or for another question) is ignored rather than delivered. The caller gets
the upstream's bytes as they came, with our ID in them; it puts the client's ID back.

UDP uses a few connected sockets, each retired after ``expire`` seconds so source ports keep
changing; a connected socket also turns an ICMP "port unreachable" into an immediate failure
instead of a timeout. TCP and TLS keep connections open and reuse them for many queries in
flight at once (RFC 7766 pipelining); a connection idle for ``expire`` is closed.

TLS failures are reported with their reason (see :mod:`interkube.tlsutil.reasons`): a rejected
server certificate at connect time, and also the server's alert that arrives on the first read
after a TLS 1.3 handshake (how a server refuses a missing or untrusted client certificate).
After a TLS connection fails, reconnects back off exponentially with jitter, so that a refusing
or unreachable upstream is not hammered with handshakes by every query and health probe.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
from collections.abc import Callable, Container
from dataclasses import dataclass

from interkube.dns.wire import HEADER_LEN, read_name_end
from interkube.errors import TlsVerificationFailed, UpstreamError, UpstreamRefused, UpstreamTimeout
from interkube.pkg import datagrams
from interkube.pkg.backoff import retry_delay
from interkube.pkg.framing import FrameReader, length_prefix
from interkube.tlsutil import reasons

#: Batched sendmmsg/recvmmsg (see interkube/_udpfast.c), or None for the pure-Python loop.
_udpfast = datagrams.udpfast


class ConnectionClosed(UpstreamError):
    """A reused stream connection closed under a query; worth one retry on a new one."""


def _question_key(wire: bytes) -> bytes:
    """The lower-cased question section of a message, for matching answers to queries."""
    end = read_name_end(wire, HEADER_LEN)
    if end < 0 or end + 4 > len(wire):
        return b""
    return wire[HEADER_LEN:end + 4].lower()


class _Ids:
    """Query IDs from the kernel's CSPRNG, fetched 4 KiB at a time.

    Off-path spoofing has to guess the ID, so it must be unpredictable; one getrandom() per
    2048 IDs instead of per query (secrets.randbits) keeps that at no measurable cost.
    """

    def __init__(self) -> None:
        self.buf = b""
        self.pos = 0

    def fresh(self, pending: Container[int]) -> int:
        while True:
            if self.pos >= len(self.buf):
                self.buf = os.urandom(4096)
                self.pos = 0
            qid = (self.buf[self.pos] << 8) | self.buf[self.pos + 1]
            self.pos += 2
            if qid not in pending:
                return qid


_ids = _Ids()


def _fresh_id(pending: Container[int]) -> int:
    return _ids.fresh(pending)


def _arm_timeout(fut: asyncio.Future[bytes], timeout: float,
                 make_error: Callable[[], Exception]) -> asyncio.TimerHandle:
    def fire() -> None:
        if not fut.done():
            fut.set_exception(make_error())
    return asyncio.get_running_loop().call_later(timeout, fire)


#: How often a UDP socket looks for queries past their deadline. One sweep per socket instead of
#: a timer per query (a heap push and pop each); timeouts fire at most this much late.
SWEEP_INTERVAL = 0.05


class _UdpSocket:
    """A connected UDP socket to one upstream, read whenever it is readable.

    Not an asyncio DatagramProtocol: answers are read in batches (recvmmsg through the C helper
    when it is built) and queries leave in batches once per event-loop pass, so forwarding costs
    a few system calls per batch rather than two per query.
    """

    def __init__(self, name: str, sock: socket.socket) -> None:
        self.name = name
        self.sock = sock
        self.fd = sock.fileno()
        self.loop = asyncio.get_running_loop()
        #: qid -> (future, lower-cased question, deadline)
        self.pending: dict[int, tuple[asyncio.Future[bytes], bytes, float]] = {}
        self.born = self.loop.time()
        self.retired = False
        self.closed = False
        self.outbox = datagrams.Outbox(sock, self.loop, self._send_failed)
        self._sweeping: asyncio.TimerHandle | None = None
        self.loop.add_reader(self.fd, self._readable)

    @property
    def transport(self) -> object | None:  # kept for callers that test "is it open"
        return None if self.closed else self

    # -- sending -----------------------------------------------------------------------------

    def send(self, qid: int, question: bytes, wire: bytes, timeout: float) -> asyncio.Future[bytes]:
        fut: asyncio.Future[bytes] = self.loop.create_future()
        self.pending[qid] = (fut, question, self.loop.time() + timeout)
        self.outbox.put(wire)
        if self._sweeping is None:
            self._sweeping = self.loop.call_later(SWEEP_INTERVAL, self._sweep)
        return fut

    def _send_failed(self, exc: OSError) -> None:
        if isinstance(exc, (BlockingIOError, InterruptedError)):
            return  # a full send buffer: those queries time out, as UDP would have them
        self._fail_all(_refused(self.name, exc))

    # -- receiving ---------------------------------------------------------------------------

    def _readable(self) -> None:
        try:
            if _udpfast is not None:
                _udpfast.drain(self.fd, self._answer, 4)
                return
            for _ in range(256):
                self._answer(self.sock.recv(65535), None)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            # On a connected UDP socket, ECONNREFUSED is the ICMP error for a query we sent;
            # every query pending here went to the same dead address.
            self._fail_all(_refused(self.name, exc))

    def _answer(self, data: bytes, addr: object) -> None:
        if len(data) < HEADER_LEN or not data[2] & 0x80:
            return None
        qid = (data[0] << 8) | data[1]
        entry = self.pending.get(qid)
        if entry is None:
            return None  # late, or not ours
        fut, question, _ = entry
        if question and data[HEADER_LEN:HEADER_LEN + len(question)].lower() != question:
            return None  # right ID, wrong question: a spoof or a confused upstream; keep waiting
        del self.pending[qid]
        if not fut.done():
            fut.set_result(data)
        self._maybe_close()
        return None

    # -- timeouts and failures ---------------------------------------------------------------

    def _sweep(self) -> None:
        self._sweeping = None
        now = self.loop.time()
        expired = [qid for qid, (_, _, deadline) in self.pending.items() if deadline <= now]
        for qid in expired:
            fut = self.pending.pop(qid)[0]
            if not fut.done():
                fut.set_exception(UpstreamTimeout(self.name, "no answer over UDP in time"))
        if self.pending and not self.closed:
            self._sweeping = self.loop.call_later(SWEEP_INTERVAL, self._sweep)
        self._maybe_close()

    def _fail_all(self, err: UpstreamError) -> None:
        pending, self.pending = self.pending, {}
        for fut, _, _ in pending.values():
            if not fut.done():
                fut.set_exception(err)

    def forget(self, qid: int) -> None:
        self.pending.pop(qid, None)
        self._maybe_close()

    def _maybe_close(self) -> None:
        if self.retired and not self.pending:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self.fd)
        if self._sweeping is not None:
            self._sweeping.cancel()
            self._sweeping = None
        self.sock.close()
        self._fail_all(UpstreamError(self.name, "socket closed"))


class PendingAnswer:
    """A UDP query sent and its answer to come (``answer`` completes with it, or fails with
    UpstreamTimeout / UpstreamError)."""

    __slots__ = ("_sock", "_qid", "answer")

    def __init__(self, sock: _UdpSocket, qid: int, answer: asyncio.Future[bytes]) -> None:
        self._sock: _UdpSocket | None = sock
        self._qid = qid
        self.answer = answer

    def release(self) -> None:
        """Stop waiting for the answer (if it has not come) and free the query ID; a retired
        socket closes once its last query is released. Idempotent."""
        sock = self._sock
        if sock is not None:
            self._sock = None
            sock.forget(self._qid)
        answer = self.answer
        if not answer.done():
            answer.cancel()
        elif not answer.cancelled():
            answer.exception()  # retrieved: no "exception was never retrieved" warning


def _refused(name: str, exc: OSError) -> UpstreamError:
    if isinstance(exc, ConnectionRefusedError):
        return UpstreamRefused(name, exc.strerror or "connection refused")
    return UpstreamError(name, f"{exc.strerror or exc}")


class DatagramExchanger:
    """Queries to one upstream over UDP."""

    def __init__(self, host: str, port: int, *, sockets: int = 4, expire: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.name = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.size = max(1, sockets)
        self.expire = expire
        self._socks: list[_UdpSocket | None] = [None] * self.size
        self._next = 0

    def _socket(self) -> _UdpSocket:
        i = self._next = (self._next + 1) % self.size
        sock = self._socks[i]
        if sock is not None and not sock.closed and sock.loop.time() - sock.born < self.expire:
            return sock
        if sock is not None:
            sock.retired = True
            sock._maybe_close()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        raw = socket.socket(family, socket.SOCK_DGRAM)
        try:
            raw.setblocking(False)
            raw.connect((self.host, self.port))
        except OSError:
            raw.close()
            raise
        sock = self._socks[i] = _UdpSocket(self.name, raw)
        return sock

    def launch(self, wire: bytes, timeout: float, question: bytes | None = None) -> PendingAnswer:
        """Send ``wire`` now and return its answer to come; ``question`` (the lower-cased
        question section) saves reading it from ``wire`` again when the caller has it.

        For callers that send several queries before awaiting any (the merge fan-out) without a
        task per query; the caller must ``release()`` the result once done with it.
        Raises UpstreamError when no socket can be opened.
        """
        try:
            sock = self._socket()
        except OSError as exc:
            raise UpstreamError(self.name, f"cannot open a UDP socket: {exc.strerror or exc}") from exc
        qid = _fresh_id(sock.pending)
        fut = sock.send(qid, _question_key(wire) if question is None else question,
                        qid.to_bytes(2, "big") + wire[2:], timeout)
        return PendingAnswer(sock, qid, fut)

    async def exchange(self, wire: bytes, timeout: float, question: bytes | None = None) -> bytes:
        """Send ``wire`` and return the answer (see :meth:`launch`)."""
        pending = self.launch(wire, timeout, question)
        try:
            return await pending.answer
        finally:
            pending.release()

    def close(self) -> None:
        for sock in self._socks:
            if sock is not None:
                sock.close()
        self._socks = [None] * self.size


class _StreamConn(asyncio.Protocol):
    def __init__(self, name: str) -> None:
        self.name = name
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, tuple[asyncio.Future[bytes], bytes]] = {}
        self.frames = FrameReader()
        self.last_used = asyncio.get_running_loop().time()
        self.closed = False
        self.answered = 0                  # answers delivered on this connection
        self.tls_version: str | None = None
        self.failure_counted = False       # its failure went into the backoff (once per connection)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream's; uvloop's is no asyncio.Transport
        sslobj = transport.get_extra_info("ssl_object")
        if sslobj is not None:
            self.tls_version = sslobj.version()

    def data_received(self, data: bytes) -> None:
        self.frames.feed(data)
        for msg in self.frames.take():
            if len(msg) < HEADER_LEN:
                continue
            qid = (msg[0] << 8) | msg[1]
            entry = self.pending.get(qid)
            if entry is None:
                continue
            fut, question = entry
            if question and msg[HEADER_LEN:HEADER_LEN + len(question)].lower() != question:
                continue
            del self.pending[qid]
            self.answered += 1
            if not fut.done():
                fut.set_result(msg)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        pending, self.pending = self.pending, {}
        if not pending:
            return
        err = self._why_closed(exc)
        for fut, _ in pending.values():
            if not fut.done():
                fut.set_exception(err)

    def _why_closed(self, exc: Exception | None) -> UpstreamError:
        if isinstance(exc, ssl.SSLError):
            # An alert after the handshake: with TLS 1.3 this is how a server says that our
            # client certificate (or the lack of one) is refused. Not worth a retry.
            return TlsVerificationFailed(self.name, reasons.client_side(exc))
        if self.tls_version == "TLSv1.3" and not self.answered:
            return ConnectionClosed(self.name, "closed right after the TLS 1.3 handshake, before any "
                                    "answer: the server probably refused our client certificate (or "
                                    "its absence) without sending an alert")
        return ConnectionClosed(self.name, f"connection closed ({exc})" if exc else
                                "connection closed by the upstream")

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@dataclass
class Backoff:
    """When to try connecting again after failures (see :func:`interkube.pkg.backoff.retry_delay`),
    and the last failure, repeated to the queries that arrive while waiting."""

    base: float = 0.1
    cap: float = 5.0
    failures: int = 0
    retry_at: float = 0.0
    last: UpstreamError | None = None

    def failed(self, err: UpstreamError, now: float) -> float:
        """Record a failure; returns the delay before the next attempt."""
        self.failures += 1
        delay = retry_delay(self.failures, first=self.base, cap=self.cap)
        self.retry_at = now + delay
        self.last = err
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self.retry_at = 0.0
        self.last = None

    def waiting(self, now: float) -> bool:
        """Whether a failure is being waited out: no connection attempt before retry_at."""
        return self.last is not None and now < self.retry_at

    def blocked(self, now: float) -> UpstreamError | None:
        """The last failure again (saying when the next attempt is) while waiting, else None."""
        err = self.last
        if err is None or not self.waiting(now):
            return None
        return type(err)(err.upstream, f"{err.reason} (next connection attempt in {self.retry_at - now:.1f}s)")


class StreamExchanger:
    """Queries to one upstream over TCP or TLS, pipelined on reused connections."""

    def __init__(self, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None,
                 server_hostname: str | None = None, expire: float = 10.0,
                 max_pipeline: int = 64, connect_timeout: float = 2.0,
                 backoff: Backoff | None = None, log: logging.Logger | None = None) -> None:
        self.host = host
        self.port = port
        proto = "tls" if ssl_context is not None else "tcp"
        self.name = f"{proto}://[{host}]:{port}" if ":" in host else f"{proto}://{host}:{port}"
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname
        self.expire = expire
        self.max_pipeline = max_pipeline
        self.connect_timeout = connect_timeout
        self._conns: list[_StreamConn] = []
        self._connecting: asyncio.Future[_StreamConn] | None = None
        #: TLS connections back off after failures (plain TCP keeps CoreDNS's behaviour).
        self.backoff = backoff if backoff is not None else (Backoff() if ssl_context is not None else None)
        #: Where TLS refusals are reported (forward sets its own logger).
        self.log = log or logging.getLogger("interkube.upstream")
        self._reported: set[str] = set()   # refusal reasons logged since the last answer

    def use_ssl_context(self, ctx: ssl.SSLContext) -> None:
        """New client TLS settings (a renewed certificate) for the next connections.

        Open connections carry on. A backoff in progress is cleared: the refusal it waits out
        may be what the new certificate fixes, so the next query tries at once.
        """
        self.ssl_context = ctx
        if self.backoff is not None:
            self.backoff.succeeded()
        self._reported.clear()

    def _failed(self, err: UpstreamError) -> None:
        """A connection could not be made, or closed before answering anything."""
        if self.backoff is not None:
            self.backoff.failed(err, asyncio.get_running_loop().time())
        if isinstance(err, TlsVerificationFailed) and err.reason not in self._reported:
            self._reported.add(err.reason)
            self.log.warning("%s refused the TLS connection: %s", self.name, err.reason)

    def _answered(self) -> None:
        if self.backoff is not None and self.backoff.failures:
            self.backoff.succeeded()
        self._reported.clear()

    async def _connect(self) -> _StreamConn:
        loop = asyncio.get_running_loop()
        tls = self.ssl_context
        server_hostname = (self.server_hostname or self.host) if tls is not None else None
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _StreamConn(self.name), self.host, self.port, ssl=tls,
                                       server_hostname=server_hostname),
                self.connect_timeout)
        except TimeoutError:
            raise UpstreamTimeout(self.name, f"connect timed out after {self.connect_timeout:g}s") from None
        except ssl.SSLError as exc:  # SSLCertVerificationError included
            raise TlsVerificationFailed(self.name, reasons.client_side(
                exc, self.server_hostname or self.host)) from exc
        except ConnectionRefusedError as exc:
            raise UpstreamRefused(self.name, "connection refused") from exc
        except OSError as exc:
            reason = f"connect failed: {exc.strerror or exc}"
            if self.ssl_context is not None and isinstance(exc, ConnectionResetError):
                reason = ("the server reset the connection during the TLS handshake (it may require a "
                          "client certificate, or not speak TLS on this port)")
            raise UpstreamError(self.name, reason) from exc
        return conn

    async def _connection(self) -> _StreamConn:
        now = asyncio.get_running_loop().time()
        live: list[_StreamConn] = []
        chosen = None
        for conn in self._conns:
            if conn.closed:
                continue
            if not conn.pending and now - conn.last_used > self.expire:
                conn.close()
                continue
            live.append(conn)
            if chosen is None and len(conn.pending) < self.max_pipeline:
                chosen = conn
        self._conns = live
        if chosen is not None:
            return chosen
        # One connect at a time: queries arriving meanwhile wait for it and share it.
        if self._connecting is not None:
            return await asyncio.shield(self._connecting)
        loop = asyncio.get_running_loop()
        if self.backoff is not None:
            blocked = self.backoff.blocked(loop.time())
            if blocked is not None:
                raise blocked
        self._connecting = loop.create_future()
        try:
            conn = await self._connect()
        except BaseException as exc:
            if isinstance(exc, UpstreamError):
                self._failed(exc)
            self._connecting.set_exception(exc)
            self._connecting.exception()  # mark retrieved; waiters re-raise it
            self._connecting = None
            raise
        self._conns.append(conn)
        self._connecting.set_result(conn)
        self._connecting = None
        return conn

    async def exchange(self, wire: bytes, timeout: float) -> bytes:
        for attempt in (0, 1):
            conn = await self._connection()
            try:
                resp = await self._exchange_on(conn, wire, timeout)
            except (ConnectionClosed, TlsVerificationFailed) as exc:
                # A reused connection the upstream closed is worth one retry on a new one; a TLS
                # refusal is not, and neither is a second close in a row.
                if attempt or isinstance(exc, TlsVerificationFailed):
                    if not conn.answered and not conn.failure_counted:
                        conn.failure_counted = True
                        self._failed(exc)
                    raise
                continue
            self._answered()
            return resp
        raise AssertionError("unreachable")

    async def _exchange_on(self, conn: _StreamConn, wire: bytes, timeout: float) -> bytes:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bytes] = loop.create_future()
        qid = _fresh_id(conn.pending)
        conn.pending[qid] = (fut, _question_key(wire))
        conn.last_used = loop.time()
        timer = _arm_timeout(fut, timeout, lambda: UpstreamTimeout(self.name, f"no answer in {timeout:g}s"))
        try:
            if conn.transport is None:
                raise ConnectionClosed(self.name, "connection closed before the query was sent")
            conn.transport.write(length_prefix(wire) + qid.to_bytes(2, "big") + wire[2:])
            return await fut
        finally:
            timer.cancel()
            conn.pending.pop(qid, None)
            conn.last_used = loop.time()

    def close(self) -> None:
        for conn in self._conns:
            conn.close()
        self._conns = []

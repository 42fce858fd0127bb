"""Sending queries to one upstream: over UDP, or over a pipelined TCP/TLS stream.

Both exchangers multiplex: every query gets a fresh random ID on the way out, and the answer is
matched back by that ID *and* by its question, so an answer that does not belong to a pending
query (late, spoofed, or for another question) is ignored rather than delivered. The caller gets
the upstream's bytes as they came, with our ID in them; it puts the client's ID back.

UDP uses a few connected sockets, each retired after ``expire`` seconds so source ports keep
changing; a connected socket also turns an ICMP "port unreachable" into an immediate failure
instead of a timeout. TCP and TLS keep connections open and reuse them for many queries in
flight at once (RFC 7766 pipelining); a connection idle for ``expire`` is closed. Queries left
unanswered on a connection the upstream closes are sent again on a fresh one within their
deadline (RFC 7766 §6.2.4), and an upstream that closes connections after a fixed number of
queries (dnsmasq: 100) has that number learned, so that our connections stop short of it.

TLS failures are reported with their reason (see :mod:`interkube.tlsutil.reasons`): a rejected
server certificate at connect time, and also the server's alert that arrives on the first read
after a TLS 1.3 handshake (how a server refuses a missing or untrusted client certificate).
After a TLS connection fails, reconnects back off exponentially with jitter, so that a refusing
or unreachable upstream is not hammered with handshakes by every query and health probe.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
import sys
from collections.abc import Container
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from interkube.dns.wire import HEADER_LEN, read_name_end
from interkube.errors import TlsVerificationFailed, UpstreamError, UpstreamRefused, UpstreamTimeout
from interkube.pkg import datagrams
from interkube.pkg.backoff import retry_delay
from interkube.pkg.framing import FrameReader, length_prefix
from interkube.tlsutil import reasons

if TYPE_CHECKING:  # loaded where TLS is used: a plain forwarder never loads it (issue 18)
    import ssl

#: Batched sendmmsg/recvmmsg (see interkube/_udpfast.c), or None for the pure-Python loop.
_udpfast = datagrams.udpfast
#: Its reader of an upstream's answers (None in a build from before it: _answer then matches them).
_drain_answers = getattr(_udpfast, "drain_answers", None)


class ConnectionClosed(UpstreamError):
    """A stream connection closed under a query, which is then sent again on a fresh one (see
    :meth:`StreamExchanger.exchange`)."""


def question_key(wire: bytes) -> bytes:
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


class AnswerSink(Protocol):
    """What waits for a UDP answer in a socket's ID table: a future (exchange, launch), or an
    object that acts on the answer from the socket's read callback (forward's callback path:
    no future and no task per query). Its methods must not raise."""

    def done(self) -> bool: ...

    def set_result(self, result: bytes, /) -> None: ...

    def set_exception(self, exception: BaseException, /) -> None: ...


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
        #: qid -> (future or sink, question section, deadline); an answer's question must be the
        #: same but for letter case (0x20 bits)
        self.pending: dict[int, tuple[AnswerSink, bytes, float]] = {}
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
        self.send_to(qid, question, wire, self.loop.time() + timeout, fut)
        return fut

    def send_to(self, qid: int, question: bytes, wire: bytes, deadline: float, sink: AnswerSink) -> None:
        self.pending[qid] = (sink, question, deadline)
        self.outbox.put(wire)
        if self._sweeping is None:
            self._sweeping = self.loop.call_later(SWEEP_INTERVAL, self._sweep)

    def _send_failed(self, exc: OSError) -> None:
        if isinstance(exc, (BlockingIOError, InterruptedError)):
            return  # a full send buffer: those queries time out, as UDP would have them
        self._watch_again()
        self._fail_all(_refused(self.name, exc))

    # -- receiving ---------------------------------------------------------------------------

    def _readable(self) -> None:
        # The answers relayed from this read (to clients, by forward's callback path) leave when it ends.
        held = datagrams.hold()
        try:
            self._read()
        finally:
            datagrams.release(held)

    def _read(self) -> None:
        try:
            if _drain_answers is not None:
                # _answer's matching, in C (see _udpfast.c): the sinks get their answers from it.
                _drain_answers(self.fd, self.pending, 4, asyncio.InvalidStateError)
                if self.retired:
                    self._maybe_close()
                return
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
            self._watch_again()
            self._fail_all(_refused(self.name, exc))

    def _answer(self, data: bytes, addr: object) -> None:
        """One datagram read: to its entry's sink, if it answers one (drain_answers does this in C)."""
        if len(data) < HEADER_LEN or not data[2] & 0x80:
            return None
        qid = (data[0] << 8) | data[1]
        pending = self.pending
        entry = pending.pop(qid, None)  # (put back below if it is not the answer: rare)
        if entry is None:
            return None  # late, or not ours
        fut, question, _ = entry
        # (The question as sent comes back as sent from almost every upstream: compared in place
        # first, without a copy; else both lower-cased, as the question matches.)
        if question and not data.startswith(question, HEADER_LEN) and \
                data[HEADER_LEN:HEADER_LEN + len(question)].lower() != question.lower():
            pending[qid] = entry
            return None  # right ID, wrong question: a spoof or a confused upstream; keep waiting
        # Only a future can be done while it waits here (cancelled, its exchange not yet
        # released); a sink leaves the table before it is called. So no done() call per answer
        # (a Python method for forward's and merge's sinks): a done future refuses the result.
        try:
            fut.set_result(data)
        except asyncio.InvalidStateError:
            pass
        if self.retired:  # (_maybe_close, inline: this runs for every answer)
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

    def _watch_again(self) -> None:
        """Register the reader anew after the socket reported an error (an ICMP port or host
        unreachable for a query sent on it, taken by a read or by a send).

        uvloop's poll handle (libuv's uv_poll_t) stops watching a descriptor once epoll reports
        POLLERR for it, while the reader stays registered as far as uvloop tells: every later
        answer on this socket sat unread and each query sent on it timed out until the socket
        expired (``expire``, forward's 10 s): forward answered SERVFAIL for that long to the
        queries after an upstream's refusal (one that started after the first queries, say).
        The new registration watches it again, and closing the old one drops its events still
        in the loop's current batch (the POLLERR of an error that a send took first, which
        would stop the new watch too). asyncio's selector keeps watching: to it this is two
        epoll_ctl calls per error."""
        if not self.closed:
            self.loop.remove_reader(self.fd)
            self.loop.add_reader(self.fd, self._readable)

    def _fail_all(self, err: UpstreamError) -> None:
        # Emptied in place: a reader of answers that holds the table (drain_answers) finds
        # nothing more in it to answer.
        entries = list(self.pending.values())
        self.pending.clear()
        for fut, _, _ in entries:
            if not fut.done():
                fut.set_exception(err)

    def forget(self, qid: int, fut: AnswerSink) -> None:
        """Stop waiting for ``fut``. Only its own entry goes: once answered, its ID may already
        have been given to a new query, whose entry this must not remove."""
        entry = self.pending.get(qid)
        if entry is not None and entry[0] is fut:
            del self.pending[qid]
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
            sock.forget(self._qid, self.answer)
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

    def __init__(self, host: str, port: int, *, sockets: int = 4, expire: float = 10.0,
                 source_address: str | None = None) -> None:
        self.host = host
        self.port = port
        #: The local address queries leave from (forward's source_address); None: the kernel's choice.
        self.source_address = source_address
        self.name = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.size = max(1, sockets)
        self.expire = expire
        self._socks: list[_UdpSocket | None] = [None] * self.size
        self._next = 0
        #: The socket that send_to() fills during this event-loop pass.
        self._batching: _UdpSocket | None = None

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
            if self.source_address:
                raw.bind((self.source_address, 0))
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
        sock = self._open_socket()
        qid = _fresh_id(sock.pending)
        fut = sock.send(qid, question_key(wire) if question is None else question,
                        qid.to_bytes(2, "big") + wire[2:], timeout)
        return PendingAnswer(sock, qid, fut)

    def send_to(self, wire: bytes, deadline: float, question: bytes, sink: AnswerSink) -> None:
        """Send ``wire`` now; ``sink`` gets its answer, or UpstreamTimeout once the loop's clock
        passes ``deadline`` (or UpstreamError), from the socket's callbacks. ``question`` is
        ``wire``'s question section, as sent or lower-cased. Nothing to release:
        the answer, the deadline sweep or the socket's close takes the entry out of the ID
        table. Raises UpstreamError when no socket can be opened."""
        # The queries of one event-loop pass go out on one socket, in one sendmmsg; the next
        # pass takes the next socket (source ports still change from pass to pass).
        sock = self._batching
        if sock is None or sock.closed or not sock.outbox.items:
            sock = self._batching = self._open_socket()
            qid = _ids.fresh(sock.pending)
            sock.send_to(qid, question, qid.to_bytes(2, "big") + wire[2:], deadline, sink)
            return
        # The rest of the pass (_UdpSocket.send_to inline: this runs for every query forwarded
        # from the callback): the socket's outbox is already due to be sent.
        pending = sock.pending
        ids = _ids  # (the next ID as _Ids.fresh takes it, inline; fresh() when it is taken or used up)
        pos = ids.pos
        buf = ids.buf
        if pos < len(buf) and (qid := (buf[pos] << 8) | buf[pos + 1]) not in pending:
            ids.pos = pos + 2
        else:
            qid = ids.fresh(pending)
        pending[qid] = (sink, question, deadline)
        sock.outbox.items.append(qid.to_bytes(2, "big") + wire[2:])
        if sock._sweeping is None:  # (its entries all answered or failed since the first)
            sock._sweeping = sock.loop.call_later(SWEEP_INTERVAL, sock._sweep)

    def _open_socket(self) -> _UdpSocket:
        try:
            return self._socket()
        except OSError as exc:
            raise UpstreamError(self.name, f"cannot open a UDP socket: {exc.strerror or exc}") from exc

    async def exchange(self, wire: bytes, timeout: float, question: bytes | None = None) -> bytes:
        """Send ``wire`` and return the answer (see :meth:`launch`)."""
        pending = self.launch(wire, timeout, question)
        try:
            return await pending.answer
        finally:
            pending.release()
            # A failed answer holds its exception, whose traceback holds this frame: without
            # this, each query that times out is a reference cycle (17 objects, its request
            # among them) left to the garbage collector, which a silent upstream under load
            # made long pauses of the whole loop (issue 19).
            del pending

    def close(self) -> None:
        for sock in self._socks:
            if sock is not None:
                sock.close()
        self._socks = [None] * self.size
        self._batching = None


@dataclass
class StreamCounters:
    """What an upstream's stream connections went through, for metrics. The owner keeps one per
    upstream name, so that the counts survive a reload (which builds new exchangers)."""

    #: connections the upstream closed with queries written on them and unanswered
    closed_early: int = 0
    #: queries sent again on a fresh connection after the upstream closed theirs
    retried: int = 0


class _StreamConn:
    """One TCP or TLS connection to the upstream: the queries waiting on it and what it carried.

    The subclasses do the I/O. The owner hears of the first message received and of a close by
    the upstream (not by us), before the queries left on it fail with ConnectionClosed (and
    their exchange sends them again).
    """

    def __init__(self, name: str, owner: StreamExchanger) -> None:
        self.name = name
        self.owner = owner
        self.pending: dict[int, tuple[asyncio.Future[bytes], bytes]] = {}
        self.frames = FrameReader()
        self.last_used = asyncio.get_running_loop().time()
        self.closed = False
        self.closed_by_us = False
        self.sent = 0                      # queries written on this connection
        self.received = 0                  # messages back, answers to queries given up on included
        self.answered = 0                  # answers delivered to a waiting query
        self.tls_version: str | None = None
        self.born = self.last_used         # for max_age
        self.failure_counted = False       # its failure went into the backoff (once per connection)
        self.error: UpstreamError | None = None  # why it closed, once it has

    @property
    def usable(self) -> bool:
        """Whether a new query may be written on it."""
        return not self.closed

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _feed(self, data: bytes) -> None:
        self.frames.feed(data)
        first = not self.received
        for msg in self.frames.take():
            if len(msg) < HEADER_LEN:
                continue
            self.received += 1
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
        if first and self.received:
            self.owner._proven(self)

    def _lost(self, exc: Exception | None) -> None:
        self.closed = True
        err = self.error = self._why_closed(exc)
        pending, self.pending = self.pending, {}
        if not self.closed_by_us:
            self.owner._lost(self, len(pending))
        for fut, _ in pending.values():
            if not fut.done():
                fut.set_exception(err)

    def _why_closed(self, exc: Exception | None) -> UpstreamError:
        if isinstance(exc, reasons.tls_errors()):
            # An alert after the handshake: with TLS 1.3 this is how a server says that our
            # client certificate (or the lack of one) is refused. Not worth a retry.
            return TlsVerificationFailed(self.name, reasons.client_side(exc))
        if self.tls_version == "TLSv1.3" and not self.answered:
            return ConnectionClosed(self.name, "closed right after the TLS 1.3 handshake, before any "
                                    "answer: the server probably refused our client certificate (or "
                                    "its absence) without sending an alert")
        if self.closed_by_us:
            return ConnectionClosed(self.name, "connection closed (shutting down)")
        return ConnectionClosed(self.name, f"connection closed ({exc})" if exc else
                                "connection closed by the upstream")


#: Bytes asked of the kernel per read on a TCP connection to an upstream.
_READ_SIZE = 65536


class _TcpConn(_StreamConn):
    """Plain TCP on a non-blocking socket that is read and written here, not by an asyncio transport.

    An upstream that closes a connection after so many queries (dnsmasq after 100) leaves the
    queries we wrote past that unread, so its kernel answers our next write with a reset. By
    then the answers it sent before closing are in our receive buffer. An asyncio transport
    drops the connection on the failed write without reading them, and every query on it, the
    answered ones too, would have to be sent again; this connection reads them first.
    """

    def __init__(self, name: str, owner: StreamExchanger, sock: socket.socket) -> None:
        super().__init__(name, owner)
        self.sock = sock
        self.fd = sock.fileno()
        self.loop = asyncio.get_running_loop()
        self.outbuf = bytearray()          # what the kernel did not take yet
        self.loop.add_reader(self.fd, self._readable)

    def write(self, data: bytes) -> None:
        if self.closed:
            return  # the query stays pending until _lost fails it (already done: it is not pending)
        if self.outbuf:
            self.outbuf += data
            return
        try:
            n = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:
            self._write_failed(exc)
            return
        if n < len(data):
            self.outbuf += data[n:]
            self.loop.add_writer(self.fd, self._writable)

    def _writable(self) -> None:
        try:
            n = self.sock.send(self.outbuf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._write_failed(exc)
            return
        del self.outbuf[:n]
        if not self.outbuf:
            self.loop.remove_writer(self.fd)

    def _write_failed(self, exc: OSError) -> None:
        """The upstream closed or reset the connection: read what it answered before that."""
        self._read(to_the_end=True)
        self._shutdown(exc)

    def _readable(self) -> None:
        self._read(to_the_end=False)

    def _read(self, to_the_end: bool) -> None:
        while not self.closed:
            try:
                data = self.sock.recv(_READ_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._shutdown(exc)
                return
            if not data:
                self._shutdown(None)
                return
            self._feed(data)
            if not to_the_end and len(data) < _READ_SIZE:
                return  # the buffer is drained; a full read may have left more behind

    def _shutdown(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.loop.remove_reader(self.fd)
        self.loop.remove_writer(self.fd)
        self.outbuf.clear()
        self.sock.close()
        self._lost(exc)

    def close(self) -> None:
        self.closed_by_us = True
        self._shutdown(None)


class _TlsConn(_StreamConn, asyncio.Protocol):
    """A TLS connection through asyncio's TLS transport."""

    def __init__(self, name: str, owner: StreamExchanger) -> None:
        super().__init__(name, owner)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream's; uvloop's is no asyncio.Transport
        sslobj = transport.get_extra_info("ssl_object")
        if sslobj is not None:
            self.tls_version = sslobj.version()

    @property
    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def data_received(self, data: bytes) -> None:
        self._feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._lost(exc)

    def write(self, data: bytes) -> None:
        # A transport that is closing drops writes; the query fails with the rest in _lost.
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        self.closed_by_us = True
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
    """Queries to one upstream over TCP or TLS, pipelined on reused connections.

    When the upstream closes a connection with queries on it unanswered, they are sent again on
    a fresh connection (RFC 7766 §6.2.4) while their deadline allows. An upstream that keeps
    closing connections after the same number of queries has that number learned as
    ``queries_per_connection``: later connections carry at most that many and are closed by us
    once answered, before the upstream closes them under the next queries.
    """

    def __init__(self, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None,
                 server_hostname: str | None = None, expire: float = 10.0,
                 max_pipeline: int = 64, connect_timeout: float = 2.0,
                 backoff: Backoff | None = None, log: logging.Logger | None = None,
                 counters: StreamCounters | None = None, max_age: float = 0.0, max_idle_conns: int = 0,
                 source_address: str | None = None) -> None:
        self.host = host
        self.port = port
        proto = "tls" if ssl_context is not None else "tcp"
        self.name = f"{proto}://[{host}]:{port}" if ":" in host else f"{proto}://{host}:{port}"
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname
        self.expire = expire
        #: A connection this old takes no new query and is closed once its queries are answered
        #: (forward's max_age; 0: no limit).
        self.max_age = max_age
        #: Idle connections kept open at most (forward's max_idle_conns; 0: no limit).
        self.max_idle_conns = max_idle_conns
        self.source_address = source_address
        self.max_pipeline = max_pipeline
        self.connect_timeout = connect_timeout
        self._conns: list[_StreamConn] = []
        self._connecting: asyncio.Task[_StreamConn] | None = None
        #: queries that found no connection with room, woken by a new connection or a freed slot
        self._waiters: collections.deque[asyncio.Future[_StreamConn | None]] = collections.deque()
        self._closed = False
        self._expiry: asyncio.TimerHandle | None = None  # the next look for connections idle past expire
        #: TLS connections back off after failures (plain TCP keeps CoreDNS's behaviour).
        self.backoff = backoff if backoff is not None else (Backoff() if ssl_context is not None else None)
        #: Where TLS refusals and a learned connection limit are reported (forward sets its own logger).
        self.log = log or logging.getLogger("interkube.upstream")
        self._reported: set[str] = set()   # refusal reasons logged since the last answer
        self.counters = counters if counters is not None else StreamCounters()
        #: The most queries a connection carries (None: no limit). Learned, never configured.
        self.queries_per_connection: int | None = None
        #: Messages received on the last connection the upstream closed early.
        self._last_early_close: int | None = None

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

    def _proven(self, conn: _StreamConn) -> None:
        """``conn`` received its first answer: the next connect, held back until now, may start."""
        self._wake(1, None)

    def _lost(self, conn: _StreamConn, unanswered: int) -> None:
        """The upstream closed ``conn``, with ``unanswered`` queries on it."""
        if unanswered:
            self._closed_early(conn)
        self._wake(1, None)  # if it was the one not answering yet, the next connect may start

    def _closed_early(self, conn: _StreamConn) -> None:
        """The upstream closed ``conn`` under unanswered queries. Twice in a row after the same
        number of messages (and not none): that number is the upstream's limit per connection.
        Asking for the same twice keeps one odd close (a restart, an idle timeout that raced a
        query) from setting a limit."""
        self.counters.closed_early += 1
        n = conn.received
        limit = self.queries_per_connection
        if n and n == self._last_early_close and (limit is None or n < limit):
            self.queries_per_connection = n
            self.log.info("%s closes connections after %d queries: each connection now carries at most %d",
                          self.name, n, n)
        self._last_early_close = n

    async def _connect(self) -> _StreamConn:
        loop = asyncio.get_running_loop()
        tls = self.ssl_context
        try:
            if tls is None:
                return await asyncio.wait_for(self._connect_tcp(), self.connect_timeout)
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _TlsConn(self.name, self), self.host, self.port,
                                       ssl=tls, server_hostname=self.server_hostname or self.host,
                                       local_addr=(self.source_address, 0) if self.source_address else None),
                self.connect_timeout)
        except TimeoutError:
            raise UpstreamTimeout(self.name, f"connect timed out after {self.connect_timeout:g}s") from None
        except reasons.tls_errors() as exc:  # SSLCertVerificationError included
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

    async def _connect_tcp(self) -> _TcpConn:
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            # Queries are small and written as they come: do not hold one back for the next.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.source_address:
                sock.bind((self.source_address, 0))
            await asyncio.get_running_loop().sock_connect(sock, (self.host, self.port))
        except BaseException:
            sock.close()
            raise
        return _TcpConn(self.name, self, sock)

    async def _open(self) -> _StreamConn:
        """The one connect in progress (``_connecting``); the queries waiting meanwhile are woken
        when it ends, and fail with its error if it failed."""
        try:
            conn = await self._connect()
        except UpstreamError as exc:
            self._failed(exc)
            self._connect_ended(exc)
            raise
        except BaseException:
            self._connect_ended(self._shut_down())  # cancelled by close()
            raise
        if self._closed:
            conn.close()
            err = self._shut_down()
            self._connect_ended(err)
            raise err
        self._conns.append(conn)
        self._arm_expiry()
        self._connect_ended(conn)
        return conn

    def _connect_ended(self, outcome: _StreamConn | UpstreamError) -> None:
        """The connect is over: as many queries waiting as the new connection has room for get
        it, in the order they came; after a failure, every query waiting fails with its error."""
        self._connecting = None
        if isinstance(outcome, UpstreamError):
            waiters, self._waiters = self._waiters, collections.deque()
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(outcome)
            return
        limit = self.queries_per_connection or sys.maxsize
        self._wake(min(self.max_pipeline - len(outcome.pending), limit - outcome.sent), outcome)

    def _wake(self, n: int, value: _StreamConn | None) -> None:
        """Wake the first ``n`` queries waiting for a connection, with one or to look again.

        Only as many as can go ahead: waking every waiter of a burst (thousands) at each event
        costs more than the forwarding."""
        waiters = self._waiters
        while n > 0 and waiters:
            waiter = waiters.popleft()
            if not waiter.done():  # else its query gave up
                waiter.set_result(value)
                n -= 1

    def _room_made(self) -> None:
        """A connection can take one more query: the first query waiting for one looks again."""
        self._wake(1, None)

    def _unproven(self) -> bool:
        """Whether a connection has queries on it and has not answered anything yet."""
        return any(c.pending and not c.received and not c.closed for c in self._conns)

    def _shut_down(self) -> UpstreamError:
        return UpstreamError(self.name, "the connections to this upstream are closed (shutting down)")

    def _has_room(self, conn: _StreamConn) -> bool:
        return len(conn.pending) < self.max_pipeline and conn.sent < (self.queries_per_connection or sys.maxsize)

    def _too_old(self, conn: _StreamConn, now: float) -> bool:
        return self.max_age > 0 and now - conn.born >= self.max_age

    def _with_room(self, now: float) -> _StreamConn | None:
        """An open connection that can take one more query (closing the idle and the spent)."""
        limit = self.queries_per_connection or sys.maxsize
        live: list[_StreamConn] = []
        chosen = None
        for conn in self._conns:
            if conn.closed:
                continue
            if not conn.pending and (conn.sent >= limit or now - conn.last_used > self.expire
                                     or self._too_old(conn, now)):
                conn.close()
                continue
            live.append(conn)
            if chosen is None and conn.usable and self._has_room(conn) and not self._too_old(conn, now):
                chosen = conn
        self._conns = live
        return chosen

    async def _connection(self, deadline: float) -> _StreamConn:
        """A connection for one query: one with room, else the next one connected.

        One connect at a time, and none while a connection still waits for its first answer:
        an upstream that has not started on the last connection gains nothing from another
        (dnsmasq -d serves one connection at a time, to its end, and connections opened beyond
        its listen backlog hang in SYN retries). Queries that find no room wait, until their
        deadline, for whichever comes first: the connect, a query on an open connection
        finishing, a first answer on a new connection, or a close; then they look again.
        """
        loop = asyncio.get_running_loop()
        looked_again = False
        while True:
            if self._closed:
                raise self._shut_down()
            conn = self._with_room(loop.time())
            if conn is not None:
                return conn
            if self._connecting is None and not self._unproven():
                if self.backoff is not None:
                    blocked = self.backoff.blocked(loop.time())
                    if blocked is not None:
                        raise blocked
                self._connecting = loop.create_task(self._open())
                self._connecting.add_done_callback(_retrieved)
            waiter: asyncio.Future[_StreamConn | None] = loop.create_future()
            if looked_again:
                self._waiters.appendleft(waiter)  # woken and found nothing: keep its place in line
            else:
                self._waiters.append(waiter)
            looked_again = True
            try:
                async with asyncio.timeout_at(deadline):
                    conn = await waiter
            except BaseException as exc:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    self._wake(1, waiter.result())  # woken, but going: another goes in its place
                if isinstance(exc, TimeoutError):
                    raise UpstreamTimeout(self.name, "no connection in time") from None
                raise
            # The connection we waited for is ours if it has room, and also if the upstream has
            # closed it already (a TLS refusal right after the handshake): the query then fails,
            # or is retried, as on any connection the upstream closed under it. One that we closed
            # meanwhile (idle beside one waiting for its first answer) is simply not there.
            if conn is not None and not conn.closed_by_us and (conn.closed or self._has_room(conn)):
                return conn

    async def exchange(self, wire: bytes, timeout: float) -> bytes:
        """Send ``wire`` and return the answer, within ``timeout`` seconds in all.

        A query on a connection the upstream closes is sent again on a fresh one, for as long as
        the deadline allows: the upstream closed it after so many queries, or after an idle
        time, not because of this query. Only connections that closed without a single answer
        count against the query: at the second such close it fails (and that connection counts
        as a failure for the TLS backoff), so an upstream that accepts connections and drops
        them is not reconnected to in a loop. A TLS refusal is not retried.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        question = question_key(wire)
        silent_closes = 0
        while True:
            if loop.time() >= deadline:
                raise UpstreamTimeout(self.name, f"no answer in {timeout:g}s (the upstream closed the "
                                      "connections it was sent on)")
            conn = await self._connection(deadline)
            try:
                resp = await self._exchange_on(conn, wire, question, deadline, timeout)
            except (ConnectionClosed, TlsVerificationFailed) as exc:
                if self._closed:
                    raise
                if not conn.received:
                    silent_closes += 1
                if silent_closes > 1 or isinstance(exc, TlsVerificationFailed):
                    if not conn.answered and not conn.failure_counted:
                        conn.failure_counted = True
                        self._failed(exc)
                    raise
                self.counters.retried += 1
                continue
            self._answered()
            return resp

    async def _exchange_on(self, conn: _StreamConn, wire: bytes, question: bytes, deadline: float,
                           timeout: float) -> bytes:
        if conn.closed:
            raise conn.error or ConnectionClosed(self.name, "connection closed before the query was sent")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bytes] = loop.create_future()
        qid = _fresh_id(conn.pending)
        conn.pending[qid] = (fut, question)
        conn.sent += 1
        conn.last_used = loop.time()
        timer = loop.call_at(deadline, _time_out, fut, self.name, timeout)
        try:
            conn.write(length_prefix(wire) + qid.to_bytes(2, "big") + wire[2:])
            if not conn.received:
                self._close_idle_while_one_waits()
            return await fut
        finally:
            timer.cancel()
            # Only our own entry: once answered, the ID may already belong to a newer query.
            entry = conn.pending.get(qid)
            if entry is not None and entry[0] is fut:
                del conn.pending[qid]
            conn.last_used = loop.time()
            if self._waiters:
                self._room_made()
            if not conn.pending:
                limit = self.queries_per_connection
                if limit is not None and conn.sent >= limit:
                    if not conn.closed:
                        conn.close()  # it carried what the upstream allows: ours to close, not the upstream's
                elif self._too_old(conn, conn.last_used) or self._idle_beyond_limit():
                    if not conn.closed:
                        conn.close()
                else:
                    self._close_idle_while_one_waits()
                    self._arm_expiry()

    def _idle_beyond_limit(self) -> bool:
        """Whether more connections are idle than max_idle_conns allows."""
        if self.max_idle_conns <= 0:
            return False
        return sum(1 for c in self._conns if not c.pending and not c.closed) > self.max_idle_conns

    def _arm_expiry(self) -> None:
        if self._expiry is None and not self._closed:
            self._expiry = asyncio.get_running_loop().call_later(self.expire, self._expire_idle)

    def _expire_idle(self) -> None:
        """Close the connections idle for ``expire``, without waiting for a query to notice:
        an idle connection held open can keep an upstream that serves one connection at a
        time (dnsmasq -d) from serving anyone else."""
        self._expiry = None
        loop = asyncio.get_running_loop()
        # A timer may fire a hair early (asyncio's clock resolution): count that as due.
        due = loop.time() - self.expire + 0.001
        idle_since = []
        for conn in self._conns:
            if conn.closed or conn.pending:
                continue
            if conn.last_used <= due:
                conn.close()
            else:
                idle_since.append(conn.last_used)
        self._conns = [c for c in self._conns if not c.closed]
        if idle_since:
            self._expiry = loop.call_at(min(idle_since) + self.expire, self._expire_idle)

    def _close_idle_while_one_waits(self) -> None:
        """While a connection waits for its first answer, keep no idle one open beside it.

        An upstream may serve one connection at a time (dnsmasq in the foreground with -d reads
        a connection until it closes, or until its 100th query): queries on a new connection are
        not read while we hold an older one open, idle. Closing the idle one costs a connect later.
        """
        conns = self._conns
        if self._unproven():
            for c in conns:
                if not c.pending and not c.closed:
                    c.close()

    def close(self) -> None:
        self._closed = True
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if self._connecting is not None:
            self._connecting.cancel()
        # The queries waiting for a connection fail now (a connect cancelled before it ran
        # would not tell them).
        self._connect_ended(self._shut_down())
        for conn in self._conns:
            conn.close()
        self._conns = []


def _time_out(fut: asyncio.Future[bytes], upstream: str, timeout: float) -> None:
    if not fut.done():
        fut.set_exception(UpstreamTimeout(upstream, f"no answer in {timeout:g}s"))


def _retrieved(task: asyncio.Task[_StreamConn]) -> None:
    """Mark a connect's failure as seen: its waiters may all have given up on it."""
    if not task.cancelled():
        task.exception()

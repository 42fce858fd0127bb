"""UDP and TCP listeners (TLS reuses the TCP one with an SSL context).

Each listener holds a reference to a :class:`Dispatcher`, which a reload swaps in one assignment:
queries already on the slow path finish on the chain they started with.

TCP follows RFC 7766: two-byte length framing, several queries in flight per connection and
answered as they complete (possibly out of order), and back-pressure per connection so that a
client that does not read its answers only stalls itself. A connection that wastes its slot is
closed: a message must be whole within the frame timeout of its first byte, only a whole query
resets the idle timeout (bytes that never make one do not), and a TLS handshake has its own,
shorter deadline. Every connection of the process, TLS ones from accept, holds a slot in one
table with a cap and a limit per client address (see interkube.server.limits). A client that
half-closes (shuts down its sending side) still gets the answers to what it asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
import sys
import time
from collections import deque
from collections.abc import AsyncGenerator, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from interkube.dns.wire import FLAG_QR, HEADER_LEN, parse_query
from interkube.errors import ListenerError
from interkube.pkg import datagrams
from interkube.pkg.framing import FrameReader, length_prefix
from interkube.plugin.handler import LATER, Streamed
from interkube.plugin.metrics import UDP_BACKLOG_DROPS
from interkube.plugin.request import Request
from interkube.server.dispatch import Dispatcher
from interkube.server.limits import DEFAULT_MAX_TCP_PER_CLIENT, ConnectionTable, TableSlot

if TYPE_CHECKING:
    import ssl

log = logging.getLogger("interkube.server")

#: Slow-path queries in flight per UDP socket; more wait in its backlog (MAX_UDP_BACKLOG), so
#: that a flood cannot grow memory without bound (CoreDNS bounds this with forward's
#: max_concurrent; unbound has 1024 per thread). Each holds a dozen objects (task, coroutines,
#: future) that the garbage collector walks at every full collection: with 10,000 waiting on
#: a silent upstream, a collection paused the loop for 200 ms. And queries started together on
#: a silent upstream time out together: 2,048 of them finishing in one pass held answers from
#: memory for 15-20 ms (bench/flood_probe.py, silent phase: p99 20.7 ms at 2,048, 3.6 ms at
#: 512). 512 still carries ~10,000 forwarded queries a second per socket to an upstream 50 ms
#: away; beyond that they wait in the backlog.
MAX_UDP_INFLIGHT = 512
#: The UDP receive buffer asked for by default (``interkube serve --udp-rcvbuf``): bursts wait
#: in it while a pass runs instead of being dropped by the kernel (its usual 208 KiB holds a
#: few hundred small datagrams: a 250k-query burst lost 8,682 of them).
DEFAULT_UDP_RCVBUF = 4 * 1024 * 1024
#: Queries in flight on one TCP connection before we stop reading from it.
MAX_TCP_PIPELINE = 128
#: Bytes queued for a client that does not read before we stop reading its queries.
TCP_WRITE_HIGH_WATER = 256 * 1024
#: Connections the kernel completes before the server accepts them.
TCP_BACKLOG = 1024


@dataclass
class ListenerOptions:
    """The listeners' limits, for the whole process (`interkube serve` flags; seconds)."""

    #: A connection is closed when it has asked no whole query (and been sent no answer) for this long.
    tcp_idle_timeout: float = 10.0
    #: A message must be whole within this long of its first byte.
    tcp_frame_timeout: float = 3.0
    #: A TLS handshake must be done within this long of the accept (and never after the idle timeout).
    tls_handshake_timeout: float = 3.0
    #: TCP and TLS connections open at once, all listeners together; None: sized from the
    #: open-files limit (interkube.server.limits.tcp_cap_for).
    max_tcp_connections: int | None = None
    #: Connections one client address may hold at once (0: no limit).
    max_tcp_per_client: int = DEFAULT_MAX_TCP_PER_CLIENT
    reuse_port: bool = False
    #: Bytes asked for each UDP socket's receive buffer (0: the kernel's default); see
    #: size_receive_buffer.
    udp_rcvbuf: int = DEFAULT_UDP_RCVBUF
    #: An answer the client has not taken within this long (it stays in our send buffer) closes
    #: the connection; None: only the idle timeout does (a server block's `timeouts { write }`).
    tcp_write_timeout: float | None = None
    #: Queries one connection may ask; the connection is closed once they are answered, and what
    #: it sent after them is not read (-1: no limit; `timeouts { maxtcpqueries }`).
    tcp_max_queries: int = -1
    #: Every listener's connections, with the options (so one per process and across reloads).
    table: ConnectionTable = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.table = ConnectionTable(self.max_tcp_connections, self.max_tcp_per_client)

    def with_timeouts(self, *, read: float | None = None, write: float | None = None,
                      idle: float | None = None, max_queries: int | None = None) -> ListenerOptions:
        """These options with a server block's `timeouts` (None keeps a value), sharing this
        one's connection table. CoreDNS's read timeout bounds the reading of a query: here the
        frame timeout and the TLS handshake's."""
        copy = dataclasses.replace(
            self,
            tcp_frame_timeout=self.tcp_frame_timeout if read is None else read,
            tls_handshake_timeout=self.tls_handshake_timeout if read is None else read,
            tcp_idle_timeout=self.tcp_idle_timeout if idle is None else idle,
            tcp_write_timeout=self.tcp_write_timeout if write is None else write,
            tcp_max_queries=self.tcp_max_queries if max_queries is None else max_queries)
        copy.table = self.table
        return copy


class ListenerStats:
    """Counters the metrics plugin reads (plain ints on the hot path)."""

    __slots__ = ("dropped_udp", "tcp_closed")

    def __init__(self) -> None:
        self.dropped_udp = 0
        #: TCP and TLS connections closed or refused, by reason (interkube.server.limits.CLOSE_REASONS).
        self.tcp_closed: dict[str, int] = {}

    @property
    def tcp_refused(self) -> int:
        return self.tcp_closed.get("refused", 0)

    @property
    def tcp_idle_closed(self) -> int:
        return self.tcp_closed.get("idle", 0)


#: Batched recvmmsg/sendmmsg (see _udpfast.c), or None for the pure-Python loop.
_udpfast = datagrams.udpfast

#: Batches of 64 datagrams read per wake-up at most. Enough to empty the socket each pass under
#: a flood (what is read is answered from memory or queued, both cheap), so that the kernel
#: does not drop datagrams, answers from memory among them, when its buffer fills; bounded so
#: that a pass still ends and the rest of the loop (TCP, timers, the slow path) gets its turn.
UDP_ROUNDS = 32
#: Queries waiting for the slow path per UDP socket (not started yet). A flood of forwarded
#: names beyond what the upstreams take drops the oldest waiting query first: it is the one
#: whose client is the most likely to have given up or asked again already.
MAX_UDP_BACKLOG = 8192
#: Seconds a query may wait in the backlog: older ones are dropped (and counted) rather than
#: started, their clients having asked again or given up (stub resolvers retry after 1 to 5
#: seconds). Only a backlog that drains slowly (upstreams that time out) holds any this old.
MAX_UDP_WAIT = 2.0
#: The slow path's share of an event-loop pass (seconds): while queries wait, the number started
#: per pass shrinks (halves) when the pass, less the reader's own time, took longer than this,
#: and grows (by UDP_STARTS_STEP) when it did not. The reader gets its turn once per pass, so
#: this bounds how long an answer from memory waits in the socket behind the slow path,
#: whatever one slow query costs. (2 ms left the probe's p99 at 5.1 ms with every forward
#: refused at 10x the forwarding capacity; 1 ms, 4.1 ms. With the callback path, whose capacity
#: and so whose 10x flood are twice the async path's, 1 ms gave 3.7-5.6 / 4.8-9.4 ms with the
#: upstream answering / refusing, and the reader's passes a p99 of 3.5-3.8 / 5.9-7.0 ms; 0.5 ms,
#: 3.0-3.7 / 2.0-2.2 ms and 2.3-2.5 / 1.9 ms, with as many flood answers relayed and the same
#: closed-loop forwarding rate: bench/flood_probe.py, bench/forward_callback.py.)
UDP_PASS_TARGET = 0.0005
UDP_STARTS_MIN = 1
UDP_STARTS_MAX = 256
UDP_STARTS_STEP = 4
#: Distinct queries (by their bytes after the ID) remembered as sent to the slow path (see
#: UdpEndpoint.handle): what a flood repeats. Past it, new ones are not remembered until the
#: next clear (a flood of random names gets no shortcut, and costs no memory).
MAX_SLOW_KEYS = 4096
#: Seconds a query is remembered as sent to the slow path: then the fast path decides again
#: (a cache that has learnt the name answers it from memory from then on), even under a flood.
SLOW_KEYS_TTL = 0.2
#: Queries one wake-up of the reader may send on the callback path (fast() returns LATER: a
#: forward sent from the socket callback, interkube.plugin.later) when nothing waits for the
#: slow path; past it, or while queries wait, what it reads goes to the backlog as slow queries
#: do, and the pump starts them, on the callback path still, as many per pass as keep a pass
#: near UDP_PASS_TARGET. Each is a few microseconds of Python in the reader, and ~23 us of the
#: server's CPU in all (two datagrams in, two out, the relay of the answer; bench/
#: forward_callback.py): under a flood of forwarded names, wake-ups that sent all they read (up
#: to forward's 1,024 in flight) held answers from memory for 11 ms (p99), and with the backlog
#: empty nothing was shed (bench/flood_probe.py). 64, one batch of reads, is more than a wake-up
#: reads below the forwarding capacity.
UDP_LATER_PER_READ = 64
#: ... and past it, as many as bring the socket's queries out on the callback path (sent, not
#: yet answered or handed back) to this many. A flood fills that at its first wake-up and the
#: budget is UDP_LATER_PER_READ from then on; below it, the clients' own bound on what they
#: have outstanding is what a wake-up reads, and holding part of it back only made it dearer:
#: with 256 outstanding (bench/forward_callback.py's closed loop, 8 sockets x 32), wake-ups read
#: 64-256 queries, most of what they read waited in the backlog, was asked of the chain a
#: second time by the pump, and the pump, its share of a pass spent on relaying answers, started
#: it a few at a time (server CPU per answer 25.2 -> 21.6 us, median of 8 alternated pairs on a
#: loaded machine). 256 such sends are about a millisecond of the reader's, once, where a
#: flood's every wake-up would have been (see above).
UDP_LATER_IN_FLIGHT = 256
#: Linux's SO_RCVBUFFORCE (Python has no name for it): with CAP_NET_ADMIN it goes past
#: net.core.rmem_max.
_SO_RCVBUFFORCE = 33


def size_receive_buffer(sock: socket.socket, wanted: int, label: str) -> int:
    """Ask for a receive buffer of ``wanted`` bytes (0: leave the kernel's default); log and
    return what was granted, in the units setsockopt takes.

    As root (CAP_NET_ADMIN) SO_RCVBUFFORCE goes past net.core.rmem_max; otherwise SO_RCVBUF is
    capped there. A buffer already larger (a bigger rmem_default) is left alone. Linux reports
    twice the size set (its bookkeeping is counted in), so the figures here are halved.
    """
    current = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
    if wanted <= 0 or current >= wanted:
        log.info("%s: UDP receive buffer %d bytes", label, current)
        return current
    forced = False
    if sys.platform.startswith("linux"):
        try:
            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, wanted)
            forced = True
        except OSError:
            pass  # no CAP_NET_ADMIN: SO_RCVBUF below, capped by net.core.rmem_max
    if not forced:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, wanted)
        except OSError as exc:
            log.warning("%s: cannot size the UDP receive buffer to %d bytes: %s", label, wanted, exc)
    got = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
    if got < wanted:
        log.warning("%s: UDP receive buffer %d bytes, not the %d asked for: net.core.rmem_max caps it "
                    "(raise that sysctl, or run with CAP_NET_ADMIN)", label, got, wanted)
    else:
        log.info("%s: UDP receive buffer %d bytes", label, got)
    return got


class UdpEndpoint:
    """A UDP socket served from a reader callback that drains it on every wake-up.

    Not an asyncio DatagramProtocol: that costs an event-loop dispatch and two system calls per
    datagram. Here each wake-up reads everything queued (in batches of 64 with the C helper, or
    one by one in Python without it) and answers what memory can in the same pass.

    The rest waits in a bounded backlog for the slow path (issue 19: a flood of forwarded names
    must not starve the answers from memory), and so does what one wake-up would send on the
    callback path past UDP_LATER_PER_READ, or at all while queries wait (a forward from the
    socket callback: cheap, but not free, and a flood ten times what the upstreams take is
    mostly that; and a new query does not pass those that wait). (Past UDP_LATER_PER_READ, a
    wake-up may send as many as keep the socket's queries out on the callback path within
    UDP_LATER_IN_FLIGHT: what clients with a bounded number outstanding send.) A callback scheduled
    once per pass starts some of the waiting queries: as many as keep a pass near
    UDP_PASS_TARGET, and no more than MAX_UDP_INFLIGHT tasks at once. So the reader gets its
    turn every pass, reads the socket empty and answers from memory ahead of any slow work; and
    when more arrives than the slow path can take, the backlog drops its oldest query (counted
    in ``interkube_dns_udp_backlog_dropped_total``) instead of the kernel dropping whatever
    arrives, from-memory queries included. A query waiting in the backlog has not started:
    it runs on the dispatcher of the moment it starts (after a reload, the new one); a started
    one finishes on the chain it started with.

    While the backlog is half full or more (the slow path is far behind), a query that the fast
    path sent to the slow path in the last SLOW_KEYS_TTL seconds (the same bytes after the ID)
    goes to the backlog at once, without a Request or a walk of the chain: under a flood ten
    times what the upstreams take, nine in ten such queries only ever displace an older one,
    and reading them was what the server spent its time on (see bench/flood_probe.py), until
    the kernel dropped datagrams, answers from memory among them. Each still starts on the
    whole chain (cache included) if it starts; a name the fast path would now answer (a cache
    that has learnt it, a reload) is queued instead for SLOW_KEYS_TTL at most.

    While the reader holds callback-path work back (``holding``: its budget was spent or queries
    waited, until the backlog is empty again), the pump asks the fast path first for each query it starts (with
    the listener as the replier, so a forward goes on the callback path, and an answer from
    memory leaves at once), and only what fast() leaves goes to a slow-path task. Below the
    forwarding capacity no wake-up reaches the budget, and nothing changes.
    """

    def __init__(self, listener: Listener, sock: socket.socket) -> None:
        self.listener = listener
        self.sock = sock
        self.fd = sock.fileno()
        self.inflight: set[asyncio.Task[None]] = set()
        #: (query, client, when it arrived) of each query waiting for the slow path, oldest first.
        self.backlog: deque[tuple[bytes, Any, float]] = deque()
        #: Requests the callback path handed back (slow()), with when: started before the backlog.
        self.resumed: deque[tuple[Request, float]] = deque()
        self.backlog_limit = MAX_UDP_BACKLOG
        self.inflight_limit = MAX_UDP_INFLIGHT
        #: Queries dropped from the backlog and not yet counted in the metric (see _count_drops).
        self.dropped = 0
        #: The bytes after the ID of queries the fast path sent to the slow path lately (see
        #: the class's docstring), forgotten together every SLOW_KEYS_TTL seconds and when the
        #: dispatcher changes.
        self.slow_keys: set[bytes] = set()
        self._slow_keys_of = listener.dispatcher
        self._slow_keys_until = time.monotonic() + SLOW_KEYS_TTL
        #: Seconds the reader took since the last pump (see _pump).
        self._reading = 0.0
        #: Slow-path queries started per pass (adapted; see UDP_PASS_TARGET).
        self.starts_per_pass = UDP_STARTS_MAX // 4
        #: Queries a wake-up of the reader may send on the callback path (UDP_LATER_PER_READ,
        #: or up to UDP_LATER_IN_FLIGHT out there), and what is left of it in this one.
        self.later_per_read = UDP_LATER_PER_READ
        self.later_in_flight = UDP_LATER_IN_FLIGHT
        self.later_left = UDP_LATER_PER_READ
        #: Queries this socket has out on the callback path: LATER, not yet answered (reply())
        #: or handed back (slow()). (One that ends with neither, a handler choosing to send
        #: nothing, stays counted: the budget only ever errs towards UDP_LATER_PER_READ.)
        self.later_out = 0
        #: Whether the backlog holds queries the reader did not let on the callback path (see
        #: the class's docstring): the pump asks the fast path first. Never without a query
        #: seen going on it (``later_seen``): a chain that has no callback path pays nothing.
        self.holding = False
        self.later_seen = False
        self.closed = False
        self._loop = asyncio.get_running_loop()
        self._pump_handle: asyncio.Handle | None = None
        #: When the previous pass's pump ran, while queries kept waiting (None: the backlog was
        #: empty since, so the time between the two says nothing about a pass).
        self._last_pump: float | None = None
        self.outbox = datagrams.Outbox(sock, self._loop, _dropped)
        self.rcvbuf = size_receive_buffer(sock, listener.options.udp_rcvbuf, str(listener))
        self._loop.add_reader(self.fd, self._readable)

    @property
    def shed_from(self) -> int:
        """Queries waiting in the backlog from which those sent to the slow path lately are
        shed (see the class's docstring): half the backlog."""
        return max(1, self.backlog_limit // 2)

    def _readable(self) -> None:
        started = time.monotonic()
        # Nothing on the callback path while queries wait for the pump (see the class's docstring).
        if self.backlog or self.resumed:
            self.later_left = 0
        else:
            room = self.later_in_flight - self.later_out
            self.later_left = room if room > self.later_per_read else self.later_per_read
        # What this read sends (queries to upstreams, answers from memory) leaves when it ends.
        held = datagrams.hold()
        try:
            self._read()
        finally:
            datagrams.release(held)
            self._reading += time.monotonic() - started

    def _read(self) -> None:
        if _udpfast is not None:
            try:
                # The C helper sheds as handle() does, without calling it (see drain_shed). (Not
                # `self.dropped += ...`: handle() adds to it during the call.)
                dropped = _udpfast.drain_shed(self.fd, self.handle, UDP_ROUNDS, self.slow_keys, self.backlog,
                                              self.shed_from, self.backlog_limit, self.listener.dispatcher.memo)
                self.dropped += dropped
            except OSError as exc:
                log.debug("udp receive error on %s: %s", self.listener, exc)
            if self.backlog and self._pump_handle is None:
                self._pump_handle = self._loop.call_soon(self._pump)
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
        backlog = self.backlog
        waiting = len(backlog)
        # (`waiting and`: with nothing waiting, as when every query is answered from memory,
        # neither the property nor the copy of the bytes after the ID is paid for)
        if waiting and waiting >= self.shed_from and data[2:] in self.slow_keys:
            # Shed: what the fast path would do (see the class's docstring), at a fifth of the cost.
            if waiting >= self.backlog_limit:
                backlog.popleft()
                self.dropped += 1
            backlog.append((data, addr, time.monotonic()))
            if self._pump_handle is None:
                self._pump_handle = self._loop.call_soon(self._pump)
            return None
        q = parse_query(data)
        if q is not None:
            req = Request(data, q, addr, "udp")
            if self.later_left > 0:
                req.replier = self  # an answer may come later (interkube.plugin.later): reply(), slow()
            resp = self.listener.dispatcher.fast(req)
            if resp is not None:
                if resp is LATER:
                    self.later_left -= 1
                    self.later_out += 1
                    self.later_seen = True
                return resp
            arrived = req.started
            if self.later_left <= 0 and self.later_seen:
                self.holding = True  # maybe a forward held back: the pump asks fast() first
        else:
            arrived = time.monotonic()
        slow_keys = self.slow_keys
        if len(slow_keys) < MAX_SLOW_KEYS:
            slow_keys.add(data[2:])
        if len(backlog) >= self.backlog_limit:
            backlog.popleft()  # the oldest waiting query: see MAX_UDP_BACKLOG
            self.dropped += 1  # (counted in the metric by the next pump: a flood drops a lot)
        # Bytes, the address and a float, not the request: a tuple of those leaves the garbage
        # collector's generations at its first collection, while requests waiting here under a
        # flood would be promoted to the oldest one by the hundred thousand, making each full
        # collection (a pause of the whole loop) longer and more frequent.
        backlog.append((data, addr, arrived))
        if self._pump_handle is None:
            self._pump_handle = self._loop.call_soon(self._pump)
        return None

    def _pump(self) -> None:
        """Start some waiting queries on the slow path: once per pass while any wait."""
        self._pump_handle = None
        if self.dropped:
            self._count_drops()
        backlog = self.backlog
        reading, self._reading = self._reading, 0.0
        if self.closed or not (backlog or self.resumed):
            self._last_pump = None
            return
        now = time.monotonic()
        if now >= self._slow_keys_until or self._slow_keys_of is not self.listener.dispatcher:
            self.slow_keys.clear()
            self._slow_keys_of = self.listener.dispatcher
            self._slow_keys_until = now + SLOW_KEYS_TTL
        starts = self.starts_per_pass
        if self._last_pump is not None:
            # The time since the previous pump is one pass; what the reader did not take of it
            # went to the slow path (mostly). Shrink the slow path's share quickly when it ran
            # long, grow it slowly when it did not. The reader's own time is not held against
            # it: that is what keeps the socket empty, and shedding slow work cannot shorten it.
            if now - self._last_pump - reading > UDP_PASS_TARGET:
                starts = max(UDP_STARTS_MIN, starts // 2)
            else:
                starts = min(UDP_STARTS_MAX, starts + UDP_STARTS_STEP)
            self.starts_per_pass = starts
        n = min(len(backlog) + len(self.resumed), starts, self.inflight_limit - len(self.inflight))
        if n <= 0:
            # Every slot is taken: a task that finishes schedules the next pump (_done).
            self._last_pump = None
            return
        dispatcher = self.listener.dispatcher
        create_task = self._loop.create_task
        inflight = self.inflight
        too_old = now - MAX_UDP_WAIT
        while backlog and backlog[0][2] < too_old:
            backlog.popleft()
            self.dropped += 1
        n -= self._start_resumed(n, too_old)
        fast_first = self.holding
        for _ in range(min(n, len(backlog))):
            data, addr, arrived = backlog.popleft()
            q = parse_query(data)  # (remembered: a dict lookup)
            if q is not None:
                req = Request(data, q, addr, "udp")
                req.started = arrived  # its duration counts the wait here
                if fast_first:
                    # Held back from the callback path by the reader (see the class's docstring).
                    req.replier = self
                    resp = dispatcher.fast(req)
                    if resp is not None:
                        if resp is LATER:
                            self.later_out += 1
                        elif resp:
                            self.outbox.put((resp, addr))
                        continue  # answered, on the callback path (LATER), or dropped
                answer = dispatcher.serve(req)
            else:
                answer = dispatcher.serve_unparsed(data, addr, "udp")
            task = create_task(self._slow(answer, addr))
            inflight.add(task)
            task.add_done_callback(self._done)
        if not backlog:
            self.holding = False
        if backlog or self.resumed:
            self._last_pump = now
            self._pump_handle = self._loop.call_soon(self._pump)
        else:
            self._last_pump = None

    def _start_resumed(self, n: int, too_old: float) -> int:
        """Start up to ``n`` of the requests the callback path handed back; how many started."""
        resumed = self.resumed
        while resumed and resumed[0][1] < too_old:
            resumed.popleft()
            self.dropped += 1
        started = 0
        while resumed and started < n:
            req, _ = resumed.popleft()
            task = self._loop.create_task(self._slow(self.listener.dispatcher.serve(req), req.client))
            self.inflight.add(task)
            task.add_done_callback(self._done)
            started += 1
        return started

    # -- the callback path's replier (interkube.plugin.later.Replier) ---------------------------

    def reply(self, req: Request, resp: bytes) -> None:
        """An answer that came later (forward's callback path): it leaves with this pass's."""
        if self.later_out:
            self.later_out -= 1
        if not self.closed:
            outbox = self.outbox
            if outbox.items:  # the pass's send is scheduled already (put() inline: once per answer)
                outbox.items.append((resp, req.client))
            else:
                outbox.put((resp, req.client))

    def slow(self, req: Request) -> None:
        """A request the callback path hands back: it waits for the slow path as the backlog's
        queries do (bounded as the backlog is, dropping its oldest), ahead of them."""
        if self.later_out:
            self.later_out -= 1
        if self.closed:
            return
        resumed = self.resumed
        if len(resumed) >= self.backlog_limit:
            resumed.popleft()
            self.dropped += 1
        resumed.append((req, time.monotonic()))
        if self._pump_handle is None:
            self._pump_handle = self._loop.call_soon(self._pump)

    def _count_drops(self) -> None:
        dropped, self.dropped = self.dropped, 0
        self.listener.stats.dropped_udp += dropped
        UDP_BACKLOG_DROPS.count(self.listener.dispatcher.server, dropped)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.inflight.discard(task)
        if (self.backlog or self.resumed) and self._pump_handle is None and not self.closed:
            self._pump_handle = self._loop.call_soon(self._pump)

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
            self.backlog.clear()
            self.resumed.clear()
            if self.dropped:
                self._count_drops()
            if self._pump_handle is not None:
                self._pump_handle.cancel()
                self._pump_handle = None


def _dropped(exc: OSError) -> None:
    """A batch of UDP answers not sent (a full buffer, a refused address): dropped, as the
    network would drop them; the clients ask again."""
    log.debug("udp answers not sent: %s", exc)


class TcpProtocol(TableSlot, asyncio.Protocol):
    """One TCP (or TLS) connection: framing, pipelining, deadlines, back-pressure, its slot.

    Plain TCP takes its slot in the connection table in connection_made; over TLS the
    TlsConnection in front of it takes the slot at accept (:meth:`admit`), before the handshake.
    """

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.table = listener.options.table
        self._loop = asyncio.get_running_loop()
        #: Where answers go (over TLS: the plaintext side, set once the handshake is done).
        self.transport: asyncio.Transport | None = None
        #: The accepted socket's transport (over TLS: the ciphertext side, set at accept).
        self.raw: asyncio.Transport | None = None
        self.frames = FrameReader()
        self.inflight: set[asyncio.Task[None]] = set()
        self.peer: Any = None
        self.client = ""
        self.admitted = False
        #: Loop time of the last whole query (or of the accept): eviction takes the oldest first.
        self.last_query = 0.0
        #: Loop time of the last whole query or answer written: the idle timeout counts from it.
        self.active = 0.0
        #: When the message begun but not yet whole must be complete (None: none begun).
        self.frame_deadline: float | None = None
        self.asked = False      # a whole query came in the data being taken
        self.eof = False        # the client has sent all it will
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        self.reading_paused = False
        self.writing_paused = False
        self.outbuf: list[bytes] | None = None
        self.proto = "tls" if listener.ssl_context is not None else "tcp"
        #: Queries this connection may still ask (-1: no limit; see tcp_max_queries).
        self.queries_left = listener.options.tcp_max_queries
        #: When the answers waiting in the send buffer must have been taken (see tcp_write_timeout).
        self.write_due: float | None = None
        #: Resolved when the client has taken enough of what was written (see _stream).
        self.drained: asyncio.Future[None] | None = None

    # -- the slot (TableSlot) -------------------------------------------------------------------

    def is_idle(self) -> bool:
        return not self.inflight and self.outbuf is None

    def close(self, reason: str) -> None:
        """Close for ``reason`` (counted): gracefully, unless answers are stuck in its buffer."""
        t = self.transport or self.raw
        if t is None or t.is_closing():
            return
        self.count_close(reason)
        if t.get_write_buffer_size():
            t.abort()  # a client that does not read would hold a graceful close open for ever
        else:
            t.close()

    # -- lifecycle ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream: asyncio.Transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport
        self.transport = stream
        if not self.admitted and not self.admit(transport):
            transport.close()
            return
        stream.set_write_buffer_limits(high=TCP_WRITE_HIGH_WATER)
        self.active = self._loop.time()
        self._arm(self.active + self.listener.options.tcp_idle_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.release()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for task in list(self.inflight):
            task.cancel()
        self.transport = None

    def eof_received(self) -> bool:
        """The client has sent all it will (a FIN; over TLS, its close_notify): the answers to
        what it asked are still sent, then the connection closes. True keeps our side open."""
        self.eof = True
        self.frame_deadline = None  # a message begun now never ends
        return not self.is_idle()

    def _finish_if_done(self) -> None:
        t = self.transport
        if self.eof and t is not None and self.is_idle() and not t.is_closing():
            t.close()

    # -- deadlines ------------------------------------------------------------------------------

    def _arm(self, when: float) -> None:
        """Make the timer fire by ``when``. One timer per connection: a later deadline needs no
        new one (the tick looks again), so a busy connection costs no timer per segment."""
        if self.timer is not None:
            if self.timer_at <= when:
                return
            self.timer.cancel()
        self.timer_at = when
        self.timer = self._loop.call_at(when, self._tick)

    def _tick(self) -> None:
        self.timer = None
        if self.transport is None:
            return
        opts = self.listener.options
        # A timer may fire a hair early (uvloop counts in milliseconds): not worth a second wake-up.
        now = self._loop.time() + 0.001
        due = self.frame_deadline
        if due is not None and now >= due:
            if not self.reading_paused:
                self.close("frame_deadline")
                return
            # We stopped reading (answers not read, the pipeline full): the rest is not late.
            due = self.frame_deadline = now + opts.tcp_frame_timeout
        if self.write_due is not None:
            if not self.transport.get_write_buffer_size():
                self.write_due = None  # the client took what was written
            elif now >= self.write_due:
                self.close("write_deadline")
                return
            else:
                due = self.write_due if due is None else min(due, self.write_due)
        idle_at = self.active + opts.tcp_idle_timeout
        if now >= idle_at:
            # Idle: no whole query and no answer for the whole timeout. A connection still owed
            # answers, or whose client does not read them, is closed too when nothing moves.
            self.close("idle")
            return
        self._arm(idle_at if due is None else min(idle_at, due))

    # -- input ----------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.queries_left == 0:
            return  # past tcp_max_queries: what comes after the last query is not read
        frames = self.frames
        frames.feed(data)
        took = False
        # Each message taken may start a slow-path task: take no more than the pipeline has room
        # for (a length prefix that lies only waits for the frame deadline).
        while not self.reading_paused:
            room = MAX_TCP_PIPELINE - len(self.inflight)
            messages = frames.take(room if self.queries_left < 0 else min(room, self.queries_left))
            if not messages:
                break
            took = True
            for msg in messages:
                self._handle(msg)
            if self.queries_left > 0:
                self.queries_left -= len(messages)
                if self.queries_left == 0:
                    # The last query this connection may ask: its answers go out, then it closes
                    # (as when the client half-closes).
                    self.eof = True
                    self.frame_deadline = None
                    self._finish_if_done()
                    return
        if took or frames:
            self._deadlines(took)
        self._update_reading()

    def _deadlines(self, took: bool) -> None:
        now = self._loop.time()
        if self.asked:
            # Only a whole query is activity: bytes that never make one (slowloris) are not.
            self.asked = False
            self.active = self.last_query = now
            if self.admitted:
                self.table.touch(self)
        if self.frames and not self.eof:
            if took or self.frame_deadline is None:
                # A message has begun in this data: it must be whole by the frame deadline.
                self.frame_deadline = now + self.listener.options.tcp_frame_timeout
                self._arm(self.frame_deadline)
        else:
            self.frame_deadline = None

    def _handle(self, msg: bytes) -> None:
        if len(msg) < HEADER_LEN or msg[2] & (FLAG_QR >> 8):
            return  # not a query: skip this frame, the framing itself is still sound
        self.asked = True
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
        task = self._loop.create_task(self._slow(answer))
        self.inflight.add(task)
        task.add_done_callback(self._done)

    async def _slow(self, answer: Coroutine[Any, Any, bytes | None]) -> None:
        resp = await answer
        if resp is not None:
            self._send(resp)
            if isinstance(resp, Streamed):
                await self._stream(resp.more)

    async def _stream(self, more: AsyncGenerator[bytes, None]) -> None:
        """Write the messages that follow a response (a zone transfer), in order: each once the
        one before has left for the socket, and while the client keeps taking them (back-pressure
        as for answers). Closing the connection cancels this task, which closes ``more``; a
        failure of ``more`` closes the connection (the client must not take a part for the whole)."""
        try:
            async with contextlib.aclosing(more):
                async for message in more:
                    t = self.transport
                    if t is None or t.is_closing():
                        return
                    self._send(message)
                    await asyncio.sleep(0)  # the flush _send scheduled, and other work, between two messages
                    while self.writing_paused and self.transport is not None:
                        self.drained = self._loop.create_future()
                        await self.drained
        except Exception:
            log.exception("%s: a streamed answer failed; closing the connection", self.listener)
            if self.transport is not None:
                self.transport.close()

    def _done(self, task: asyncio.Task[None]) -> None:
        self.inflight.discard(task)
        if self.reading_paused:
            self._update_reading()
            if not self.reading_paused and self.frames:
                self.data_received(b"")
        if self.eof:
            self._finish_if_done()

    def _send(self, resp: bytes) -> None:
        # Answers produced in one pass of the event loop leave in one write: a pipelining client
        # sends dozens of queries per segment, and a write (a system call, and for TLS a record)
        # per answer cost more than answering them.
        if self.outbuf is None:
            self.outbuf = []
            self._loop.call_soon(self._flush)
        self.outbuf.append(length_prefix(resp))
        self.outbuf.append(resp)

    def _flush(self) -> None:
        out, self.outbuf = self.outbuf, None
        t = self.transport
        if out and t is not None and not t.is_closing():
            t.write(b"".join(out))
            self.active = self._loop.time()
            write_timeout = self.listener.options.tcp_write_timeout
            if write_timeout is not None and self.write_due is None and t.get_write_buffer_size():
                self.write_due = self.active + write_timeout  # the client must take it by then
                self._arm(self.write_due)
        if self.eof:
            self._finish_if_done()

    # -- back-pressure ------------------------------------------------------------------------

    def pause_writing(self) -> None:
        self.writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)
        self._update_reading()
        if not self.reading_paused and self.frames:
            self.data_received(b"")

    def _update_reading(self) -> None:
        t = self.transport
        if t is None:
            return
        should_pause = self.writing_paused or len(self.inflight) >= MAX_TCP_PIPELINE
        if should_pause != self.reading_paused:
            self.reading_paused = should_pause
            if self.eof:
                return  # the client's FIN was read: the socket has nothing more (resuming would read it again)
            if should_pause:
                t.pause_reading()
            else:
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
        self.connections: set[TableSlot] = set()
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
            if self.transport == "https":
                # DNS over HTTPS: loaded for an https:// listener only (h2 and the HTTP code are
                # no part of a plain DNS server's footprint, issue 18).
                from interkube.server import doh

                factory = doh.connection_factory(self)
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
        # The TLS layer loads with the first TLS listener (see interkube.server.dot).
        from interkube.server.dot import TlsConnection

        assert self.ssl_context is not None
        return TlsConnection(self, self.ssl_context)

    def count_close(self, reason: str) -> None:
        """Count a TCP or TLS connection closed or refused for ``reason``: in this listener's
        stats, and in the process's counter (kept across reloads and listeners)."""
        closed = self.stats.tcp_closed
        closed[reason] = closed.get(reason, 0) + 1
        self.options.table.count(str(self), reason)

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
                t = conn.transport or conn.raw  # a TLS connection still in its handshake: the socket
                if t is not None:
                    t.close()
            await self._tcp.wait_closed()
            self._tcp = None

"""The process's limits on TCP and TLS connections, and the open-files limit they are sized from.

Every listener of the process (dns:// and tls://, every port) keeps its connections in one
:class:`ConnectionTable`, so that the cap bounds the process's descriptors, whatever the
Corefile opens. The table enforces two limits at accept, before a TLS handshake starts:

* a cap on connections: when it is reached, the connection idle the longest is closed to make
  room for the new one (RFC 7766 section 6.2.3), and the new one is refused only when every
  connection has queries in flight;
* a limit per client address, so that one client cannot take the whole table: its own idle
  connection is closed first, and when all of its connections are busy, the new one is refused.

The cap comes from ``RLIMIT_NOFILE`` unless set: a quarter of the limit (at least 256, at most
half) stays out of its reach, for upstream sockets, zone and certificate files, watches, the
HTTP endpoints and modules imported late. With a soft limit of 1024 (systemd's default for a
service), 1,100 idle connections once left no descriptor for the forwarder's UDP sockets: every
forwarded query failed. :func:`raise_open_files_limit` lifts the soft limit to the hard one at
start, as Go does for CoreDNS and as unbound does.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter, OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from interkube.pkg.metrics import NAMESPACE

if TYPE_CHECKING:
    import asyncio

    from prometheus_client.core import Metric

    from interkube.server.listeners import Listener

log = logging.getLogger("interkube.server")

#: The connection cap when the open-files limit allows more (and none is configured).
DEFAULT_MAX_TCP_CONNECTIONS = 1024
#: Connections one client address may hold at once, by default (0: no limit).
DEFAULT_MAX_TCP_PER_CLIENT = 64
#: Descriptors the cap leaves free at the least, however small the limit.
MIN_FD_RESERVE = 256
#: When the table is full, how many of its least recently active connections are looked at for
#: an idle one: the busy ones at the front were busy a long time, so an idle one is near.
EVICTION_SCAN = 64

#: Why connections are closed (the ``reason`` label of the closed-connections counter).
CLOSE_REASONS = ("idle", "frame_deadline", "write_deadline", "handshake", "per_client", "evicted", "refused")


class Connection(Protocol):
    """What the table needs of a connection (the listeners' TcpProtocol)."""

    #: The client's address (no port): the key of the per-client limit.
    client: str
    #: Loop time of its last whole query (or of its accept): the oldest is evicted first.
    last_query: float

    def is_idle(self) -> bool:
        """No query in flight and no answer waiting to be written."""

    def evict(self, reason: str) -> None:
        """Close it now: its slot goes to a newer connection."""

    def count_close(self, reason: str) -> None:
        """Count a close (or a refusal) of this connection for ``reason``."""



class TableSlot:
    """A stream connection's slot in its listener's table: taken at accept, given back when it
    closes or is evicted. Shared by the DNS-over-TCP/TLS and the DoH connections; each sets the
    attributes below in its __init__ and provides is_idle() and close(reason)."""

    listener: Listener
    table: ConnectionTable
    _loop: asyncio.AbstractEventLoop
    #: Where answers go (over TLS: the plaintext side, once the handshake is done).
    transport: Any
    #: The accepted socket's transport (over TLS: the ciphertext side, set at accept).
    raw: Any
    peer: Any
    client: str
    admitted: bool
    #: Loop time of the last whole query (or of the accept): eviction takes the oldest first.
    last_query: float
    #: Loop time of the last whole query or answer written: the idle timeout counts from it.
    active: float

    def is_idle(self) -> bool:
        raise NotImplementedError

    def close(self, reason: str) -> None:
        raise NotImplementedError

    def admit(self, raw: asyncio.BaseTransport) -> bool:
        """Take a slot for the socket just accepted; False: it is refused (the caller closes it)."""
        self.raw = raw
        self.peer = raw.get_extra_info("peername")
        self.client = client_address(self.peer)
        self.last_query = self.active = self._loop.time()
        if not self.table.admit(self, str(self.listener)):
            return False
        self.admitted = True
        self.listener.connections.add(self)  # closed by the listener's stop
        return True

    def release(self) -> None:
        """Give the slot back (closed, or closing). Idempotent."""
        if self.admitted:
            self.admitted = False
            self.table.release(self)
            self.listener.connections.discard(self)

    def evict(self, reason: str) -> None:
        self.release()
        self.close(reason)

    def count_close(self, reason: str) -> None:
        self.listener.count_close(reason)

class ConnectionTable:
    """Every accepted TCP and TLS connection of the process, least recently active first."""

    def __init__(self, max_connections: int | None = None,
                 per_client: int = DEFAULT_MAX_TCP_PER_CLIENT) -> None:
        self.max_connections = max_connections
        self.per_client = per_client
        self._cap: int | None = None
        #: Least recently active first: a whole query moves a connection to the end.
        self.order: OrderedDict[Connection, None] = OrderedDict()
        self.clients: dict[str, dict[Connection, None]] = {}
        #: Connections closed or refused, by (listener, reason): published as a counter.
        self.closed: dict[tuple[str, str], int] = {}
        #: Each connection's listener, for the gauge of open connections.
        self.labels: dict[Connection, str] = {}

    @property
    def cap(self) -> int:
        """The most connections open at once: as configured, else sized from the open-files
        limit when first needed (after :func:`raise_open_files_limit` has run)."""
        if self._cap is None:
            self._cap = self.max_connections or tcp_cap_for(open_files_limit())
        return self._cap

    def __len__(self) -> int:
        return len(self.order)

    def admit(self, conn: Connection, label: str) -> bool:
        """Give ``conn`` (just accepted) a slot, closing an idle one if need be; False: refuse it."""
        mine = self.clients.get(conn.client)
        if self.per_client and mine is not None and len(mine) >= self.per_client:
            victim = _oldest_idle(mine)
            if victim is None:
                conn.count_close("per_client")
                return False
            victim.evict("per_client")
        elif len(self.order) >= self.cap:
            victim = next((c for c in itertools.islice(self.order, EVICTION_SCAN) if c.is_idle()), None)
            if victim is None:
                conn.count_close("refused")
                return False
            victim.evict("evicted")
        self.order[conn] = None
        self.clients.setdefault(conn.client, {})[conn] = None
        self.labels[conn] = label
        return True

    def touch(self, conn: Connection) -> None:
        """``conn`` has asked a whole query: the last to be evicted now."""
        self.order.move_to_end(conn)

    def release(self, conn: Connection) -> None:
        """Free ``conn``'s slot (it closed, or is closing). Idempotent."""
        if self.order.pop(conn, False) is False:
            return
        self.labels.pop(conn, None)
        mine = self.clients.get(conn.client)
        if mine is not None:
            mine.pop(conn, None)
            if not mine:
                del self.clients[conn.client]

    def count(self, label: str, reason: str) -> None:
        key = (label, reason)
        self.closed[key] = self.closed.get(key, 0) + 1

    def collect(self) -> Iterable[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        closed = CounterMetricFamily(
            f"{NAMESPACE}_tcp_connections_closed",
            "Counter of TCP and TLS connections closed or refused by the server, by reason: idle (idle "
            "timeout), frame_deadline (a message not whole in time), write_deadline (an answer not taken in "
            "time, `timeouts { write }`), handshake (a TLS handshake not done in time), per_client (the "
            "client's connection limit), evicted (closed to make room, the idle longest), refused (every "
            "connection busy).", labels=["server", "reason"])
        for (server, reason), n in sorted(self.closed.items()):
            closed.add_metric([server, reason], n)
        yield closed
        open_now = GaugeMetricFamily(f"{NAMESPACE}_tcp_connections",
                                     "TCP and TLS connections open now (TLS: from accept, handshake included).",
                                     labels=["server"])
        for server, n in sorted(Counter(self.labels.values()).items()):
            open_now.add_metric([server], n)
        yield open_now
        cap = GaugeMetricFamily(f"{NAMESPACE}_tcp_connections_max",
                                "The most TCP and TLS connections the process keeps open at once.")
        cap.add_metric([], self.cap)
        yield cap


def _oldest_idle(conns: Iterable[Connection]) -> Connection | None:
    idle = [c for c in conns if c.is_idle()]
    return min(idle, key=lambda c: c.last_query) if idle else None


def client_address(peer: object) -> str:
    """The per-client key of a peer address: the IP without the port (an IPv4 client of a
    dual-stack socket as its IPv4 address)."""
    if isinstance(peer, tuple) and peer:
        host = str(peer[0])
        return host[7:] if host.startswith("::ffff:") and "." in host else host
    return str(peer)


# -- the open-files limit --------------------------------------------------------------------------

def open_files_limit() -> int:
    """The soft ``RLIMIT_NOFILE`` now (0 where there is none to read)."""
    try:
        import resource
    except ImportError:  # not a Unix
        return 0
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 0 if soft == resource.RLIM_INFINITY else soft


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; (before, after).

    An unlimited hard limit is taken as the kernel's ceiling (``fs.nr_open`` on Linux), which is
    what setrlimit accepts. A refusal leaves the limit as it was.
    """
    try:
        import resource
    except ImportError:
        return (0, 0)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        try:
            target = int(Path("/proc/sys/fs/nr_open").read_text())
        except (OSError, ValueError):
            target = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open files limit from %d to %d: %s", soft, target, exc)
    return soft, open_files_limit()


def fd_reserve(limit: int) -> int:
    """Descriptors the connection cap leaves free under an open-files ``limit``."""
    return min(max(MIN_FD_RESERVE, limit // 4), limit // 2)


def tcp_cap_for(limit: int) -> int:
    """The connection cap an open-files ``limit`` allows (0: unknown, the default cap)."""
    if limit <= 0:
        return DEFAULT_MAX_TCP_CONNECTIONS
    return max(1, min(DEFAULT_MAX_TCP_CONNECTIONS, limit - fd_reserve(limit)))


def describe(table: ConnectionTable, before: int, after: int) -> str:
    """The start-up line: the open-files limit, the connection cap and the per-client limit."""
    raised = f" (raised from {before})" if after > before > 0 else ""
    limit = f"open files limit {after}{raised}" if after else "no open files limit"
    per = f"{table.per_client} per client address" if table.per_client else "no limit per client address"
    return f"{limit}; TCP and TLS connections: at most {table.cap}, {per}"


__all__ = ["ConnectionTable", "Connection", "TableSlot", "client_address", "open_files_limit", "raise_open_files_limit",
           "tcp_cap_for", "fd_reserve", "describe", "CLOSE_REASONS", "DEFAULT_MAX_TCP_CONNECTIONS",
           "DEFAULT_MAX_TCP_PER_CLIENT"]

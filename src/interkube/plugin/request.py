"""One query on its way through a chain: wire bytes, client, transport, and lazy parses."""

from __future__ import annotations

import ipaddress
import time
from typing import TYPE_CHECKING, Any

import dns.name

from interkube.dns.wire import Query, parse_query

if TYPE_CHECKING:
    from array import array

    import dns.message

    from interkube.pkg.datagrams import Stamp
    from interkube.plugin.later import Pending, Replier


class Route:
    """The server block zone a query was routed to, as logs and metrics name it.

    Compared and hashed by identity: metrics key their counts on the route, and a dataclass's
    generated __hash__ would hash every field in Python on each query. (A plain class: a
    dataclass is a few exec'd functions at import, a millisecond of every start, issue 18.)
    """

    __slots__ = ("zone", "server", "view")

    def __init__(self, zone: str, server: str, view: str = "") -> None:
        self.zone = zone
        self.server = server    # e.g. "dns://127.0.0.1:5353", the "server" label of metrics
        self.view = view        # the block's `view` name, the "view" label of metrics ("" without one)


#: The route of a request the dispatcher has not matched to a zone yet.
UNROUTED = Route(".", "")


class Request:
    """A query as a chain sees it.

    Only admitted queries become requests: ``query`` is what the fast parser read (the
    dispatcher normalises odd but valid queries so that it can). ``message`` parses with
    dnspython on first use, so the fast path never pays for it.
    """

    __slots__ = ("wire", "query", "client", "proto", "local", "route", "started", "_message",
                 "meta", "answered_by", "replier", "later", "memo", "memo_tally")

    def __init__(self, wire: bytes, query: Query, client: tuple[Any, ...], proto: str,
                 local: tuple[Any, ...] | None = None, message: dns.message.Message | None = None) -> None:
        self.wire = wire
        self.query = query
        self.client = client
        self.proto = proto          # "udp", "tcp" or "tls"
        self.local = local
        self.route = UNROUTED
        self.started = time.monotonic()
        #: ``message``: the client's query as dnspython read it, when ``wire`` is a normalized
        #: form that left out what a handler needs (an IXFR's SOA in the authority section).
        self._message: dns.message.Message | None = message
        self.meta: dict[str, Any] | None = None
        #: The plugin whose answer this is (the `plugin` label of responses_total); set by the
        #: handler that produces the bytes.
        self.answered_by = ""
        #: Where an answer that comes later goes (set by the UDP listener; None: the answer must
        #: come from fast() or serve()). See interkube.plugin.later.
        self.replier: Replier | None = None
        #: The answer to come on the callback path: what handlers do to it, or how the slow
        #: path carries on (interkube.plugin.later).
        self.later: Pending | None = None
        #: The stamp of an answer from memory that every later query with the same bytes after
        #: the ID may be sent (interkube.server.dispatch: the UDP answer memo), set by the handler
        #: that answered; None: not so.
        self.memo: Stamp | None = None
        #: Where the memo counts the answers it sends for this one, as the prometheus plugin
        #: counted this one (its entry: an array('d') of count, seconds, query and answer bytes).
        self.memo_tally: array[float] | None = None

    @property
    def message(self) -> dns.message.Message:
        """The query parsed by dnspython (raises dns.exception.DNSException if it cannot be)."""
        if self._message is None:
            import dns.message as dns_message  # (imported at first use, not at every start: issue 18)

            self._message = dns_message.from_wire(self.wire, ignore_trailing=True)
        return self._message

    @property
    def qname(self) -> dns.name.Name:
        return self.message.question[0].name

    @property
    def qname_text(self) -> str:
        """The question name as the client wrote it, fully qualified."""
        return self.qname.to_text()

    @property
    def qtype(self) -> int:
        return self.query.qtype

    @property
    def zone(self) -> str:
        """The server block zone that matched (for logs and metrics)."""
        return self.route.zone

    @property
    def server(self) -> str:
        return self.route.server

    @property
    def family(self) -> int:
        # IPv6 socket addresses are 4-tuples (host, port, flowinfo, scope_id).
        return 6 if len(self.client) == 4 else 4

    @property
    def client_ip(self) -> str:
        return str(self.client[0])

    @property
    def client_address(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        """The client's address, an IPv4 client of a dual-stack socket (::ffff:a.b.c.d) as IPv4
        and without an IPv6 scope: what access lists compare."""
        addr = ipaddress.ip_address(str(self.client[0]).split("%", 1)[0])
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            return addr.ipv4_mapped
        return addr

    def rewrite(self, wire: bytes) -> bool:
        """Make ``wire`` the query the rest of the chain reads (a plugin changed its flags or its
        EDNS payload size; the ID and the question stay). False, and nothing changed, when the
        fast parser does not take ``wire``. Idempotent edits only: a query the fast path sends
        to the slow path meets the same handlers again."""
        query = parse_query(wire)
        if query is None:
            return False
        self.wire = wire
        self.query = query
        self._message = None
        return True

    def set_meta(self, key: str, value: Any) -> None:
        if self.meta is None:
            self.meta = {}
        self.meta[key] = value


def local_address(req: Request) -> tuple[str, int]:
    """The address the query came in on: the socket's when the listener says, else the server
    block's (``dns://HOST:PORT``; a block on every interface has the unspecified address)."""
    if req.local:
        return str(req.local[0]), int(req.local[1])
    server = req.route.server
    hostport = server.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    host = host.strip("[]") or ("::" if req.family == 6 else "0.0.0.0")
    try:
        return host, int(port)
    except ValueError:
        return host, 0

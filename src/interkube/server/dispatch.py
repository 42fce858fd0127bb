"""Routing a query to the server block of the longest matching zone, on the fast or slow path.

The dispatcher is what a listener calls. It never raises: malformed input becomes FORMERR (when a
header can be read) or is dropped, an unsupported opcode NOTIMP, an unknown EDNS version
BADVERS, a zone nobody serves REFUSED, and an exception inside a chain SERVFAIL.

Malformed is decided once, at admission, by the one wire reader (interkube.dns.reader): the
fast parser refuses a query whose EDNS options are malformed (and remembers why, per query
shape), every other query it does not take is walked whole here, and dnspython's parse comes
after. So no handler ever meets a query its dnspython parse would refuse. Each FORMERR for a
malformed query is counted (interkube_dns_malformed_queries_total, by reason) and logged at
most once a minute: anyone can send such packets, and a line (or a traceback) each would let
them flood the log.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import dns.exception
import dns.opcode
import dns.rcode
import dns.rdatatype

from interkube.dns import message as dnsmsg
from interkube.dns.memo import SERVED_NAMES, Memo
from interkube.dns.names import ZoneSet
from interkube.dns.reader import REASON_MESSAGE, Malformed
from interkube.dns.wire import (
    CLASSIC_UDP_LIMIT,
    FLAG_QR,
    HEADER_LEN,
    RCODE_NOTIMP,
    RCODE_REFUSED,
    RCODE_SERVFAIL,
    admissible,
    error_response,
    formerr,
    parse_query,
    truncated,
)
from interkube.errors import DnsError
from interkube.pkg.datagrams import AnswerMemo, answer_memo
from interkube.plugin.handler import Handler, Terminal
from interkube.plugin.metrics import MALFORMED_QUERIES
from interkube.plugin.request import Request, Route
from interkube.server.views import ViewChain, ViewRouter

log = logging.getLogger("interkube.server")

#: A server block as one listener sees it: its route (names for logs and metrics) and the head
#: of its chain.
Chain = tuple[Route, Handler]

#: The fast path's chains by name (Dispatcher._chain_memo): as many as the zone matches keep
#: (interkube.dns.names), two entries a served name.
CHAIN_MEMO_LIMIT = 16384
CHAIN_MEMO_PER_NAME = 2.0
CHAIN_MEMO_CEILING = 1 << 18

#: Seconds between two log lines about malformed queries.
MALFORMED_LOG_INTERVAL = 60.0

#: The UDP answer memo (see Dispatcher): entries per served name, and its bounds. The table has a
#: power of two of 40-byte entries in sets of 4 (at half full or less, few names find their set
#: full); each entry used holds the query's and the answer's bytes, about 150 bytes for an
#: address question: at the ceiling, 10 MB of table and some 40 MB more when a flood of distinct
#: questions answered from memory fills it. The floor is for a cache's names, which are not
#: counted as served: a default cache holds 9,984 answers of each kind.
ANSWER_MEMO_PER_NAME = 2
ANSWER_MEMO_FLOOR = 1 << 14
ANSWER_MEMO_CEILING = 1 << 18


class RateLimitedLog:
    """At most one line per ``interval`` seconds; the next line says how many were left out."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self.quiet_until = -math.inf
        self.left_out = 0

    def info(self, message: str, *args: object) -> None:
        now = self.clock()
        if now < self.quiet_until:
            self.left_out += 1
            return
        self.quiet_until = now + self.interval
        if self.left_out:
            message += " (and %d more since the last such line)"
            args = (*args, self.left_out)
            self.left_out = 0
        log.info(message, *args)


#: One for the process (not per dispatcher: a reload or a second listener must not multiply
#: the lines).
malformed_log = RateLimitedLog(MALFORMED_LOG_INTERVAL)


class Dispatcher:
    """The zones one listener serves, and how a query finds its chain."""

    def __init__(self, chains: dict[str, Chain], views: dict[str, list[ViewChain]] | None = None) -> None:
        self.chains = chains
        # Zones with blocks chosen by `view` (interkube.server.views); None: no view anywhere.
        self.views = ViewRouter(chains, views) if views else None
        self.zones = ZoneSet({**(views or {}), **chains})
        #: Without views, the chain of a name depends on the name alone: the fast path keeps it
        #: by name (one dict lookup a query, where the zone match is a call and two lookups),
        #: bounded and sized as the zone matches are (interkube.dns.memo). With views, the
        #: chain depends on the client too: None.
        self._chain_memo: Memo[bytes, Chain | None] | None = None if self.views is not None else \
            Memo(CHAIN_MEMO_LIMIT, per_name=CHAIN_MEMO_PER_NAME, ceiling=CHAIN_MEMO_CEILING)
        self._chain_of = None if self._chain_memo is None else self._chain_memo.table
        #: The UDP answer memo: answers from memory the listener's C drain sends without calling
        #: the fast path (interkube/_udpfast.c), for the chains whose every handler is memo_safe
        #: (not with views: their chains depend on the client). A new dispatcher (a reload) has
        #: a new, empty one. None: no such chain, or no C helpers.
        self.memo_heads = frozenset() if self.views is not None else \
            frozenset(head for _, head in chains.values() if _memo_safe(head))
        self._sized_memo = _SizedAnswerMemo.make() if self.memo_heads else None
        self.memo: AnswerMemo | None = None if self._sized_memo is None else self._sized_memo.memo
        # The `server` label of this listener's counts: every block on one listener shares it.
        routes = [*(route for route, _ in chains.values()),
                  *(chain[0] for vs in (views or {}).values() for _, chain in vs)]
        self.server = routes[0].server if routes else ""

    # -- fast path: synchronous, inside the socket callback ---------------------------------

    def fast(self, req: Request) -> bytes | None:
        """The response (b"" to send nothing), or None when the slow path must run."""
        q = req.query
        chain_of = self._chain_of
        if chain_of is None:
            chain = self._chain(req)
        else:
            try:  # (a try costs nothing in 3.11 and a subscript less than .get())
                chain = chain_of[q.lname]
            except KeyError:
                chain = self._remember_chain(req)
        if chain is None:
            return error_response(req.wire, RCODE_REFUSED, q)
        route, head = chain
        req.route = route
        try:
            resp = head.fast(req)
        except Exception:  # a bug in a handler must not take the listener down
            log.exception("handler failed on the fast path; answering SERVFAIL")
            return error_response(req.wire, RCODE_SERVFAIL, q)
        # The query as the chain left it: bufsize may have lowered the size the answer must fit.
        # (No answer of 512 bytes or less is ever cut: the property is not read for those.)
        if resp and len(resp) > CLASSIC_UDP_LIMIT and req.proto == "udp" and len(resp) > req.query.udp_limit:
            resp = truncated(resp, req.query)
        stamp = req.memo
        if stamp is not None and req.proto == "udp" and type(resp) is bytes and head in self.memo_heads:
            # Every later query with these bytes after the ID gets this answer from the C drain
            # while the stamp holds (see Handler.memo_safe).
            assert self.memo is not None
            self.memo.put(req.wire, resp, stamp, req.memo_tally)
        return resp

    def _remember_chain(self, req: Request) -> Chain | None:
        chain = self._chain(req)
        assert self._chain_memo is not None
        self._chain_memo.remember(req.query.lname, chain)
        return chain

    def _chain(self, req: Request) -> Chain | None:
        """The chain of the longest zone containing the question's name (a view's, if one takes
        the request); None: no zone here (REFUSED)."""
        zone = self.zones.match(req.query.lname)
        return None if zone is None else self.chains[zone] if self.views is None else self.views.pick(req, zone)

    # -- slow path ----------------------------------------------------------------------------

    async def serve_unparsed(self, wire: bytes, client: tuple[Any, ...], proto: str) -> bytes | None:
        """The response to input the fast parser refused (at least 12 bytes); None to drop it."""
        try:
            admitted = self._admit(wire, client, proto)
        except Exception:
            log.exception("dispatcher failed; dropping the query")
            return None
        if isinstance(admitted, bytes):
            return admitted or None
        return await self.serve(admitted)

    async def serve(self, req: Request) -> bytes | None:
        """The response to an admitted query; None to send nothing."""
        try:
            q = req.query
            chain = self._chain(req)
            if chain is None:
                return error_response(req.wire, RCODE_REFUSED, q)
            route, head = chain
            req.route = route
            try:
                resp = await head.serve(req)
            except DnsError as exc:
                log.debug("%s: %s", route.zone, exc)
                resp = error_response(req.wire, getattr(exc, "rcode", RCODE_SERVFAIL), q)
            except Exception:
                log.exception("handler failed; answering SERVFAIL")
                resp = error_response(req.wire, RCODE_SERVFAIL, q)
            if not resp:
                return None  # a handler chose to send nothing (acl drop)
            if resp[:2] != req.wire[:2]:
                resp = req.wire[:2] + resp[2:]
            if req.proto == "udp" and len(resp) > req.query.udp_limit:
                resp = truncated(resp, req.query)
            return resp
        except Exception:
            log.exception("dispatcher failed; dropping the query")
            return None

    def _admit(self, wire: bytes, client: tuple[Any, ...], proto: str) -> Request | bytes:
        """Turn a query the fast parser refused into a normal request, or answer it directly.

        Returns the request, or the early response (b"" to drop).
        """
        if len(wire) < HEADER_LEN or wire[2] & (FLAG_QR >> 8):
            return b""  # too short to answer, or a response: never answer a response
        verdict = admissible(wire)
        if isinstance(verdict, Malformed):
            return self._malformed(wire, client, verdict.reason, str(verdict))
        wire = verdict
        import dns.message as dns_message  # (imported at first use, not at every start: issue 18)

        try:
            msg = dns_message.from_wire(wire, ignore_trailing=True)
        except (dns.exception.DNSException, ValueError, IndexError, UnicodeError) as exc:
            # What dnspython checks beyond the reader (the rdata of every record type).
            return self._malformed(wire, client, REASON_MESSAGE, str(exc) or type(exc).__name__)
        if msg.opcode() != dns.opcode.QUERY:
            return error_response(wire, RCODE_NOTIMP)
        if len(msg.question) != 1:
            return self._malformed(wire, client, REASON_MESSAGE, f"{len(msg.question)} questions")
        if msg.edns > 0:
            resp = dnsmsg.make_response(msg, authoritative=False)
            resp.use_edns(0, 0, 1232)
            resp.set_rcode(dns.rcode.BADVERS)
            return resp.to_wire()
        try:
            normal = dnsmsg.normalized_query_wire(msg)
        except dns.exception.DNSException as exc:
            return self._malformed(wire, client, REASON_MESSAGE, str(exc))
        q = parse_query(normal)
        if q is None:
            return self._malformed(wire, client, REASON_MESSAGE, "not a plain query once normalized")
        # An IXFR names the client's version in its authority section, which the normalized
        # form leaves out: the chain reads the client's own message (Request.message).
        return Request(normal, q, client, proto, message=msg if q.qtype == dns.rdatatype.IXFR else None)

    def _malformed(self, wire: bytes, client: tuple[Any, ...], reason: str, why: str) -> bytes:
        """FORMERR for a malformed query, counted, and logged at most once a minute."""
        MALFORMED_QUERIES.count(self.server, reason)
        malformed_log.info("%s: answered FORMERR to a malformed query from %s: %s",
                           self.server, client[0] if client else "?", why)
        return formerr(wire)


def _memo_safe(head: Handler) -> bool:
    """Whether every handler of the chain from ``head`` may have its answers in the memo."""
    handler: Handler | None = head
    while handler is not None and type(handler).memo_safe:
        if isinstance(handler, Terminal):
            return True
        handler = getattr(handler, "next", None)  # (a chain not linked: none to trust)
    return False


class _SizedAnswerMemo:
    """A dispatcher's answer memo, sized by the names the plugins serve (interkube.dns.memo's
    SERVED_NAMES): ANSWER_MEMO_PER_NAME entries a name within its bounds, so that names asked
    in turn find their answers (a resize, which forgets them all, only when the table's power
    of two changes: not at every Service a cluster adds)."""

    __slots__ = ("memo", "__weakref__")

    def __init__(self, memo: AnswerMemo) -> None:
        self.memo = memo

    @classmethod
    def make(cls) -> _SizedAnswerMemo | None:
        memo = answer_memo(ANSWER_MEMO_FLOOR)
        if memo is None:
            return None
        sized = cls(memo)
        SERVED_NAMES.size(sized)
        return sized

    def resize(self, names: int) -> None:
        wanted = min(ANSWER_MEMO_CEILING, max(ANSWER_MEMO_FLOOR, ANSWER_MEMO_PER_NAME * names))
        capacity = 1 << max(0, wanted - 1).bit_length()
        if capacity != self.memo.capacity:
            self.memo.resize(capacity)

"""The autopath handler: a client's search path walked on the server (CoreDNS's autopath).

A client with ``ndots:5`` and the search list ``<ns>.svc.cluster.local svc.cluster.local
cluster.local`` asks ``web.other.<ns>.svc.cluster.local`` first for the short name ``web.other``,
and would go on down its list on every NXDOMAIN. For a question that lies under the first
domain of the client's search list, this handler asks the rest of the chain the name with each
domain of the list in turn, then the name as written (``web.other.svc.cluster.local``, ...,
``web.other.``), and answers with the first answer that is not NXDOMAIN: a CNAME from the
question to the first record of another name, then that answer's records, so that the client
takes it for its first question. When every name is NXDOMAIN, the answer to the question itself
is given and the client walks its list as it would have.

Per query, on the fast path as on the slow one:

1. the search list of the client (``@kubernetes``: the namespace of the pod with the client's
   address, looked up in memory) or the configured one; none: the query passes untouched;
2. the *walk* for (list, question key), remembered: whether the question lies under the list's
   first domain, and where its base name ends;
3. the question itself first, then each other name, asked of the rest of the chain in place
   (the request asks the other name while the chain reads it and the client's again after);
   on the fast path each must be answered from memory (kubernetes templates, the cache), or
   the query goes to the slow path, which awaits them;
4. an answer found under another name is given the client's question and the CNAME with
   dnspython; the walk keeps the last one as a template, reused while the chain answers that
   name with the same bytes, and patched when only their TTLs change (the cache behind counting
   down): a pod's repeated lookup costs one chain lookup per name tried and a template render,
   nothing parsed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Final

import dns.exception
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rrset
from prometheus_client.core import CounterMetricFamily, Metric

from interkube.dns.memo import Memo
from interkube.dns.names import ZoneSet
from interkube.dns.reader import TYPE_OPT, Malformed
from interkube.dns.reader import Walk as WireWalk
from interkube.dns.wire import (
    HEADER_LEN,
    RCODE_FORMERR,
    RCODE_NOTIMP,
    RCODE_NXDOMAIN,
    RCODE_REFUSED,
    Query,
    label_offsets,
    parse_query,
    template_for,
)
from interkube.errors import MalformedMessage
from interkube.pkg.metrics import NAMESPACE
from interkube.pkg.shared import Kind
from interkube.plugin.answers import INLINE_BUILDS, Deferred
from interkube.plugin.handler import SLOW, Handler
from interkube.plugin.request import Request
from interkube.plugin.searchpath import SearchPath, SearchPathSource

#: Walks remembered, by (search list, question key), the oldest forgotten first.
WALK_LIMIT: Final = 32_768

Cell = list[int]
#: Errors that a plugin gives back without answering (CoreDNS's plugins return them for the
#: server to write: file's REFUSED for a name outside its zones when no plugin follows it).
_RETURNED = frozenset({RCODE_REFUSED, RCODE_FORMERR, RCODE_NOTIMP})


def goes_on(resp: bytes, by: str) -> bool:
    """Whether the walk goes on past ``resp``, the chain's answer to one name (``by``: the
    plugin that answered, "" when none did): NXDOMAIN, nothing to send, or an error returned
    rather than answered. Anything else is the answer, a SERVFAIL at the end of the chain too
    (CoreDNS's "no next plugin", which fails the query)."""
    if not resp:
        return True
    rcode = resp[3] & 0x0F
    return rcode == RCODE_NXDOMAIN or (rcode in _RETURNED and not by)


class AutopathStats:
    """CoreDNS's autopath metric, one set per process (reloads keep counting): answers given
    for a name of the client's search path that was not NXDOMAIN, by server."""

    __slots__ = ("success",)

    def __init__(self) -> None:
        self.success: dict[str, Cell] = {}

    def cell(self, server: str) -> Cell:
        found = self.success.get(server)
        if found is None:
            found = self.success[server] = [0]
        return found

    def collect(self) -> list[Metric]:
        family = CounterMetricFamily(f"{NAMESPACE}_autopath_success", "Counter of requests that did autopath.",
                                     labels=["server"])
        for server, cell in list(self.success.items()):
            family.add_metric([server], cell[0])
        return [family]


AUTOPATH_STATS = Kind("autopath statistics", AutopathStats)


class Kept:
    """The last answer a walk found under another name: the chain's answer (``down``), the
    client's made of it (``out``, and as a template), and where their TTLs are, so that an answer
    that differs from the kept one only in its TTLs (a cache counting down) is patched, not
    parsed and rendered again."""

    __slots__ = ("at", "down", "size", "tail", "out", "template", "ttls", "copies")

    def __init__(self, at: int, down: bytes, out: bytes, query: Query,
                 ttls: tuple[int, ...], copies: tuple[tuple[int, int], ...] | None) -> None:
        self.at = at                    # the name's place in the search list
        self.down = down
        self.size = len(down)
        self.tail = down[2:]            # what the next answer is compared with (all but the ID)
        self.out = out
        self.template = template_for(out, query)
        self.ttls = ttls                # the TTL fields of ``down`` (OPT's aside)
        #: (offset in ``out``, offset in ``down``) of each TTL of ``out``; None when the records
        #: do not correspond.
        self.copies = copies

    @classmethod
    def made(cls, at: int, down: bytes, out: bytes, query: Query, inserted: int) -> Kept:
        """``out`` made of ``down`` with a CNAME at record ``inserted`` (-1: none), which takes the
        TTL of the record after it."""
        try:
            ttls, theirs = ttl_offsets(down), ttl_offsets(out)
        except Malformed:
            return cls(at, down, out, query, (), None)
        sources = list(range(len(ttls)))
        if inserted >= 0:
            sources.insert(inserted, inserted)
        copies = tuple((o, ttls[i]) for o, i in zip(theirs, sources, strict=True)) \
            if len(sources) == len(theirs) else None
        return cls(at, down, out, query, ttls, copies)

    def same(self, at: int, resp: bytes) -> bool:
        return at == self.at and len(resp) == self.size and resp.endswith(self.tail)

    def retimed(self, at: int, resp: bytes, query: Query) -> Kept | None:
        """This answer with ``resp``'s TTLs when ``resp`` differs from ``down`` in nothing else
        (its ID aside); None otherwise."""
        copies = self.copies
        if copies is None or at != self.at or len(resp) != self.size:
            return None
        old = self.down
        start = 2
        for off in self.ttls:
            if resp[start:off] != old[start:off]:
                return None
            start = off + 4
        if resp[start:] != old[start:]:
            return None
        out = bytearray(self.out)
        for out_off, down_off in copies:
            out[out_off:out_off + 4] = resp[down_off:down_off + 4]
        return Kept(at, resp, bytes(out), query, self.ttls, copies)


def ttl_offsets(wire: bytes) -> tuple[int, ...]:
    """Where the TTL of each record of ``wire`` is, in order (the OPT record's aside); raises
    Malformed."""
    return tuple(rdata - 6 for *_, rtype, _rclass, _ttl, rdata, _rdlen in WireWalk(wire).records()
                 if rtype != TYPE_OPT)


class Walk:
    """What autopath does with one question for one search list: the length of the question's
    base name (its labels before the list's first domain, in wire form) and the last answer
    found under another name."""

    __slots__ = ("base_len", "found")

    def __init__(self, base_len: int) -> None:
        self.base_len = base_len
        self.found: Kept | None = None


#: The walk of a question outside the list's first domain: the query passes untouched.
OUTSIDE: Final = Walk(-1)


def walk_for(path: SearchPath, q: Query) -> Walk:
    """The walk of ``q`` for ``path``: OUTSIDE unless its name lies below the first domain.

    CoreDNS also walks the first domain itself, with an empty base name, and fails the query
    (SERVFAIL); that name is answered as without autopath here (docs/divergences.md)."""
    lname = q.lname
    first = path.wires[0]
    base_len = len(lname) - len(first)
    if base_len <= 0 or not lname.endswith(first) or base_len not in label_offsets(lname):
        return OUTSIDE
    return Walk(base_len)


def with_cname(resp: bytes, client: Query) -> tuple[bytes, int]:
    """``resp`` (the chain's answer to another name of the search list) as the answer to the
    client's question: the client's question, and in front of the first answer record owned by
    another name a CNAME from the question to that name, with that record's TTL (CoreDNS's
    rule: an answer without such a record gets none); and where the CNAME went (-1: nowhere).
    Raises dnspython's errors (DNSException, ValueError) when ``resp`` cannot be read."""
    msg = dns.message.from_wire(resp, one_rr_per_rrset=True, ignore_trailing=True)
    name, _ = dns.name.from_wire(client.wire, HEADER_LEN)
    msg.question = [dns.rrset.RRset(name, dns.rdataclass.RdataClass.make(client.qclass),
                                    dns.rdatatype.RdataType.make(client.qtype))]
    for i, rrset in enumerate(msg.answer):
        if rrset.name != name:  # (case-insensitive, as CoreDNS compares)
            target = dns.rdtypes.ANY.CNAME.CNAME(  # type: ignore[no-untyped-call]  # (dnspython does not annotate it)
                dns.rdataclass.IN, dns.rdatatype.CNAME, rrset.name)
            msg.answer.insert(i, dns.rrset.from_rdata(name, rrset.ttl, target))
            return msg.to_wire(max_size=65535), i
    return msg.to_wire(max_size=65535), -1


def other_names(req: Request, path: SearchPath, walk: Walk) -> Iterator[tuple[int, Query]]:
    """The walk's names after the question, as queries with their place in the list: the client's
    header, base name (in its letters) and OPT record with each later search domain, then the
    root. A name too long with a domain is left out (there is no such name)."""
    q = req.query
    wire = req.wire
    head = wire[:HEADER_LEN + walk.base_len]
    rest = wire[q.qname_end:]
    wires = path.wires
    for at in range(1, len(wires)):
        sub = parse_query(head + wires[at] + rest)
        if sub is not None:
            yield at, sub


class Asking:
    """``with Asking(req, sub):`` the request asks ``sub`` while the chain reads it (no copy of
    the request), and the client's question again after, whatever happens."""

    __slots__ = ("req", "saved")

    def __init__(self, req: Request, sub: Query) -> None:
        self.req = req
        self.saved = (req.wire, req.query, req._message)
        req.wire = sub.wire
        req.query = sub
        req._message = None
        req.answered_by = ""

    def __enter__(self) -> Asking:
        return self

    def __exit__(self, *exc: object) -> None:
        req = self.req
        req.wire, req.query, req._message = self.saved


class AutopathHandler(Handler):
    plugin = "autopath"

    def __init__(self, zones: tuple[str, ...], search: Callable[[Request], SearchPath | None],
                 success: Cell | None = None) -> None:
        #: None: every name (a block for the root), the common case, without a zone match.
        self.zones = None if zones in ((), (".",)) else ZoneSet(zones)
        #: The search list of the client asking, or None.
        self.search = search
        self.success: Cell = success if success is not None else [0]
        self._walks: Memo[tuple[SearchPath, bytes], Walk] = Memo(WALK_LIMIT)
        self._known = self._walks.table

    @staticmethod
    def first_source(sources: tuple[SearchPathSource, ...]) -> Callable[[Request], SearchPath | None]:
        """The search list the first of ``sources`` that has one gives (CoreDNS asks one plugin;
        a block may hold several kubernetes stanzas)."""
        if len(sources) == 1:
            return sources[0]

        def first(req: Request) -> SearchPath | None:
            for source in sources:
                path = source(req)
                if path is not None:
                    return path
            return None

        return first

    def walk(self, req: Request) -> tuple[SearchPath, Walk] | None:
        """The client's search list and the question's walk; None to pass the query on."""
        q = req.query
        if self.zones is not None and self.zones.match(q.lname) is None:
            return None
        path = self.search(req)
        if path is None:
            return None
        key = (path, q.key)
        walk = self._known.get(key)
        if walk is None:
            walk = walk_for(path, q)
            self._walks.remember(key, walk)
        return None if walk is OUTSIDE else (path, walk)

    # -- the fast path ---------------------------------------------------------------------------

    def fast(self, req: Request) -> bytes | None:
        found = self.walk(req)
        if found is None:
            return self.next.fast(req)
        req.answered_by = ""
        first = self.next.fast(req)
        if first is None:
            return SLOW
        first_by = req.answered_by
        if self.settles(first, first_by):
            return first
        for at, sub in other_names(req, *found):
            with Asking(req, sub):
                resp = self.next.fast(req)
            if resp is None:
                return SLOW
            if not goes_on(resp, req.answered_by):
                try:
                    return self.answer(req, found[1], at, resp, fast=True)
                except (Deferred, MalformedMessage):
                    return SLOW  # (over the fast path's budget for building, or for the errors plugin)
        req.answered_by = first_by
        return first

    # -- the slow path ---------------------------------------------------------------------------

    async def serve(self, req: Request) -> bytes:
        found = self.walk(req)
        if found is None:
            return await self.next.serve(req)
        req.answered_by = ""
        first = await self.next.serve(req)
        first_by = req.answered_by
        if self.settles(first, first_by):
            return first
        for at, sub in other_names(req, *found):
            with Asking(req, sub):
                resp = await self.next.serve(req)  # (a failure fails the query, as in CoreDNS)
            if not goes_on(resp, req.answered_by):
                return self.answer(req, found[1], at, resp, fast=False)
        req.answered_by = first_by
        return first

    def settles(self, first: bytes, by: str) -> bool:
        """Whether the question's own answer is the answer (counted as CoreDNS counts it)."""
        if goes_on(first, by):
            return False
        self.success[0] += 1
        return True

    # -- the answer ------------------------------------------------------------------------------

    def answer(self, req: Request, walk: Walk, at: int, resp: bytes, *, fast: bool) -> bytes:
        """The client's answer made of ``resp``, the chain's answer to the ``at``-th name."""
        q = req.query
        kept = walk.found
        if kept is None or not kept.same(at, resp):
            kept = kept.retimed(at, resp, q) if kept is not None else None
            if kept is None:
                started = INLINE_BUILDS.begin() if fast else 0.0  # (raises Deferred over budget)
                try:
                    out, inserted = with_cname(resp, q)
                except (dns.exception.DNSException, ValueError) as exc:
                    raise MalformedMessage(f"autopath: the answer to a name of the search path cannot be read: "
                                           f"{exc}") from exc
                finally:
                    if fast:
                        INLINE_BUILDS.end(started)
                kept = Kept.made(at, resp, out, q, inserted)
            walk.found = kept
        self.success[0] += 1
        req.answered_by = self.plugin
        return kept.template.render(q)


__all__ = ["AUTOPATH_STATS", "OUTSIDE", "WALK_LIMIT", "Asking", "AutopathHandler", "AutopathStats", "Kept", "Walk",
           "goes_on", "other_names", "ttl_offsets", "walk_for", "with_cname"]

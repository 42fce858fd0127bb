"""Answers from memory: built once with dnspython, then served as pre-encoded templates.

A :class:`TemplateHandler` answers a question with a *template* (a pre-encoded response that
:meth:`~interkube.dns.wire.Template.render` patches with each query's ID and question) or passes
it on (:data:`PASS`); the base class serves the template on both paths. How the template is
found is the plugin's own :meth:`TemplateHandler.template`:

* :class:`MemoryHandler` (hosts, file) keeps a :class:`Generation` per version of its data,
  built on a miss by :meth:`MemoryHandler.build`; replacing the data (a reloaded file)
  replaces the templates in the same assignment.
* Plugins whose data changes one object at a time (kubernetes, clusterset) keep a
  :class:`DependentGeneration` instead, whose table drops exactly the templates a change
  touched.

Negative answers (NXDOMAIN, NODATA with the zone's SOA, and the bare refusals) are written on
the wire instead (:func:`negative_answer`, :func:`bare_answer`: the bytes dnspython gives, in a
few µs rather than ~100): a flood of random names in a served zone makes one per query, and
built through dnspython they exhausted the fast path's build budget (issue 19 §7). A handler
that can tell such a name from its data without dnspython says so in
:meth:`MemoryHandler.wire_answer` (file), or before :meth:`DependentGeneration.build`
(kubernetes, with :meth:`DependentGeneration.keep`); those answers cost the budget nothing.

Any client can make a table entry per query for answers of nothing, and for answers a plugin
makes up for the asked name (a zone's wildcard, a pod name read as an address: a build returns
those as :class:`Synthesized`). Both kinds have a bound of their own in a :class:`TemplateTable`
(:data:`PER_QUERY_CAPACITY`), well below the table's.
"""

from __future__ import annotations

import enum
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterable
from typing import Final, Generic, Protocol, TypeVar

from interkube.dns.names import ZoneSet
from interkube.dns.negative import SoaRecord, negative_response
from interkube.dns.wire import (
    RCODE_NOERROR,
    RCODE_NXDOMAIN,
    RCODE_REFUSED,
    RCODE_SERVFAIL,
    Query,
    Template,
    error_response,
    template_for,
)
from interkube.pkg.datagrams import Stamp, StampType
from interkube.plugin.handler import SLOW, Handler, passes_later
from interkube.plugin.request import Request

DataT = TypeVar("DataT")
#: A dependency key: what one lookup read (see interkube.kube.index).
DepKey = Hashable


class Answer(Protocol):
    """Something that renders the response to a query: a Template, or a stand-in."""

    def render(self, query: Query) -> bytes:
        """The response bytes for ``query``."""


class _Pass(enum.Enum):
    """Marks a question a handler passes to the next one (fallthrough, or not its data)."""

    PASS = "pass"


PASS: Final = _Pass.PASS

#: What a template table holds for a question.
Entry = Answer | _Pass
#: An answer made without a build: its bytes, or PASS.
Made = bytes | _Pass
#: What MemoryHandler.wire_answer gives: such an answer, or None (build() must tell).
WireAnswer = Made | None


class _ErrorAnswer:
    """A stand-in for a template: an error response built per query from its own bytes (there
    is nothing worth keeping)."""

    __slots__ = ("rcode",)

    def __init__(self, rcode: int) -> None:
        self.rcode = rcode

    def render(self, query: Query) -> bytes:
        return error_response(query.wire, self.rcode, query)


#: Where there is no data to answer from (a cluster not synced yet).
SERVFAIL: Final = _ErrorAnswer(RCODE_SERVFAIL)
#: Where a question is refused (a zone transfer of data that is no zone to copy).
REFUSED: Final = _ErrorAnswer(RCODE_REFUSED)


def negative_answer(query: Query, soa: SoaRecord, name_error: bool) -> bytes | None:
    """The authoritative NXDOMAIN (``name_error``) or NODATA answer to ``query`` with the zone's
    SOA in the authority section, written on the wire; None for a query whose answer only
    dnspython writes as the handlers do (one asking for EDNS padding): build it there."""
    return negative_response(query, RCODE_NXDOMAIN if name_error else RCODE_NOERROR, soa)


def bare_answer(query: Query, rcode: int) -> bytes | None:
    """A non-authoritative answer with ``rcode`` and nothing but the question (and OPT), as
    make_response(authoritative=False) gives it (REFUSED for a transfer, SERVFAIL where there
    is no SOA to say NXDOMAIN with); None as for :func:`negative_answer`."""
    return negative_response(query, rcode, None, authoritative=False)


class Deferred(Exception):
    """Raised by a template build on the fast path that is over its budget (InlineBuilds): the
    query goes to the slow path, which builds it there."""


#: The share of the time the fast path may spend building answers (dnspython renders each in
#: 100-200 µs), and how much of it at once.
INLINE_BUILD_SHARE = 0.25
INLINE_BUILD_BURST = 0.002


class InlineBuilds:
    """A budget for building answers on the fast path, inside the socket's reader.

    A template is built on the first query for its key. Done in the reader, a flood of names
    nobody asked before (random subdomains of a served zone, a fuzz) made each query cost a
    dnspython render there, and the answers that were ready waited behind it in the socket,
    or were dropped by the kernel. Builds on the fast path may take INLINE_BUILD_SHARE of the
    time (a token bucket holding INLINE_BUILD_BURST); beyond it a miss raises Deferred and the
    query joins the slow path's bounded backlog (see interkube.server.listeners.UdpEndpoint),
    where it is built in turn or, in a flood, shed. The slow path builds whatever it is given.
    """

    __slots__ = ("serving", "stamp", "tokens")

    def __init__(self) -> None:
        self.tokens = INLINE_BUILD_BURST
        self.stamp = time.perf_counter()
        #: Set while TemplateHandler.serve looks its template up: the slow path always builds.
        self.serving = False

    def begin(self) -> float:
        """Before a build: its start time; raises Deferred on the fast path over budget."""
        now = time.perf_counter()
        if self.serving:
            return now
        tokens = min(INLINE_BUILD_BURST, self.tokens + (now - self.stamp) * INLINE_BUILD_SHARE)
        self.stamp = now
        self.tokens = tokens
        if tokens <= 0:
            raise Deferred
        return now

    def end(self, started: float) -> None:
        if not self.serving:
            self.tokens -= time.perf_counter() - started


#: One budget for the process: its fast path is one event loop.
INLINE_BUILDS = InlineBuilds()


class Synthesized(bytes):
    """A built answer made up for the question's own name (a zone's wildcard, a pod name read as
    its address), which any client can make one of per query: returned by a build so that its
    template counts among the table's per-query entries (see :data:`PER_QUERY_CAPACITY`)."""

    __slots__ = ()


#: Entries of a template table that any client can make one of per query at will: those that
#: answer nothing (NXDOMAIN, NODATA, an error, PASS) and those :class:`Synthesized` for the asked
#: name. A flood of random names or types makes one per query, so they have a bound of their own,
#: well below the table's (whose other answers are bounded by the data). Issue 19: a fuzz's
#: random names under a zone's wildcard filled the table at 51 a second towards its 100,000.
PER_QUERY_CAPACITY = 10_000


def _answers_nothing(value: Entry) -> bool:
    if not isinstance(value, Template):
        return True  # PASS (not this handler's name), SERVFAIL, REFUSED
    return value.rcode != RCODE_NOERROR or value.head[4:6] == b"\x00\x00"  # no answer records


def _revoke(entry: Entry | None) -> None:
    """A template leaves its table: answers from it are no longer sent from the answer memo."""
    if type(entry) is Template and entry.stamp is not None:
        entry.stamp.revoke()


class TemplateTable:
    """key -> Template (or PASS), bounded; the oldest entries go first when it is full.

    Each template put here gets a stamp (``Template.stamp``) below the table's own: an answer
    rendered from it may be sent from the UDP answer memo (interkube.server.dispatch) while the
    stamp holds. The stamp is revoked when the template leaves the table (evicted, invalidated,
    replaced) and the table's when the table is no longer read (:meth:`retire`: its handler
    replaced the generation), so the memo never sends what this table would no longer give.

    An OrderedDict, because its popitem(last=False) is O(1): deleting a plain dict's first key
    leaves a hole that every later next(iter(d)) walks over (61 us per insert at 100k entries,
    measured), which a flood of distinct names would turn into a stall. Entries any client can
    make one of per query (see :data:`PER_QUERY_CAPACITY`) are also bounded on their own
    (``per_query_capacity``, oldest first): those are what a fuzz of random names fills a table
    with (issue 19: RSS grew by 100 MB under one).
    """

    __slots__ = ("_map", "_per_query", "capacity", "get", "per_query_capacity", "stamp")

    def __init__(self, capacity: int = 100_000, per_query_capacity: int = PER_QUERY_CAPACITY,
                 parent: Stamp | None = None) -> None:
        self._map: OrderedDict[bytes, Entry] = OrderedDict()
        self.capacity = capacity
        self.per_query_capacity = per_query_capacity
        #: The per-query entries, oldest first, each with its key (some may be gone from the map
        #: already, or replaced there).
        self._per_query: deque[tuple[bytes, Entry]] = deque()
        self.get: Callable[[bytes], Entry | None] = self._map.get
        #: ``parent``: what else the table's answers depend on (a cluster's current index).
        self.stamp: Stamp = StampType(parent)

    def put(self, key: bytes, value: Entry, synthesized: bool = False) -> None:
        """Keep ``value`` as the answer for ``key``; ``synthesized``: made up for the asked name
        (see :class:`Synthesized`)."""
        m = self._map
        if synthesized or _answers_nothing(value):
            self._note_per_query(key, value)
        if len(m) >= self.capacity:
            _revoke(m.popitem(last=False)[1])
        self._keep(key, value)

    def _keep(self, key: bytes, value: Entry) -> None:
        """``value`` as ``key``'s entry (stamped below the table), in place of any other."""
        if type(value) is Template:
            value.stamp = StampType(self.stamp)
        _revoke(self._map.get(key))
        self._map[key] = value

    def retire(self) -> None:
        """The table is read no more (its generation was replaced): nothing it holds is sent
        from the answer memo any longer."""
        self.stamp.revoke()

    def _note_per_query(self, key: bytes, value: Entry) -> None:
        per_query = self._per_query
        if len(per_query) >= self.per_query_capacity:
            old, entry = per_query.popleft()
            if self._map.get(old) is entry:  # (a key answered otherwise since is kept)
                self._drop(old)
        per_query.append((key, value))

    def _drop(self, key: bytes) -> bool:
        entry = self._map.pop(key, None)
        _revoke(entry)
        return entry is not None

    def __len__(self) -> int:
        return len(self._map)


class Generation(Generic[DataT]):
    """One immutable version of a handler's data and the templates rendered from it."""

    __slots__ = ("data", "templates")

    def __init__(self, data: DataT, capacity: int = 100_000) -> None:
        self.data = data
        self.templates = TemplateTable(capacity)


class DependentTemplateTable(TemplateTable):
    """key -> template, with each template's dependency keys and the reverse map.

    A cluster's data changes one object at a time, many times a second under churn; a new
    table per event would mean rebuilding every answer all the time. This table keeps, with
    each template, the dependency keys of the lookups that built it, and :meth:`invalidate`
    removes exactly the templates whose keys a change reports.
    """

    __slots__ = ("_deps", "_by_dep", "invalidated")

    def __init__(self, capacity: int = 100_000, per_query_capacity: int = PER_QUERY_CAPACITY,
                 parent: Stamp | None = None) -> None:
        super().__init__(capacity, per_query_capacity, parent)
        self._deps: dict[bytes, tuple[DepKey, ...]] = {}
        self._by_dep: dict[DepKey, set[bytes]] = {}
        #: Templates removed because their data changed (for metrics and benchmarks).
        self.invalidated = 0

    def put(self, key: bytes, value: Entry, synthesized: bool = False, deps: Iterable[DepKey] = ()) -> None:
        m = self._map
        if key not in m:
            if synthesized or _answers_nothing(value):
                self._note_per_query(key, value)
            if len(m) >= self.capacity:
                self._drop(next(iter(m)))
        self._keep(key, value)
        deps = tuple(deps)
        self._deps[key] = deps
        by_dep = self._by_dep
        for dep in deps:
            keys = by_dep.get(dep)
            if keys is None:
                by_dep[dep] = {key}
            else:
                keys.add(key)

    def _drop(self, key: bytes) -> bool:
        entry = self._map.pop(key, None)
        if entry is None:
            return False
        _revoke(entry)
        by_dep = self._by_dep
        for dep in self._deps.pop(key, ()):
            keys = by_dep.get(dep)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del by_dep[dep]
        return True

    def invalidate(self, changed: Iterable[DepKey]) -> int:
        """Drop every template built from a lookup of one of the ``changed`` keys."""
        dropped = 0
        for dep in changed:
            keys = self._by_dep.pop(dep, None)
            if keys:
                for key in keys:
                    dropped += self._drop(key)
        self.invalidated += dropped
        return dropped

    def dependents(self, dep: DepKey) -> int:
        """How many templates depend on ``dep`` (for tests)."""
        return len(self._by_dep.get(dep, ()))


class DependentGeneration(Generic[DataT]):
    """One version of the data (an index, a set of clusters) whose table drops answers by
    dependency. A relist or a reloaded snapshot is still a new generation and a new table."""

    __slots__ = ("data", "templates")

    def __init__(self, data: DataT, capacity: int = 100_000, parent: Stamp | None = None) -> None:
        self.data = data
        self.templates = DependentTemplateTable(capacity, parent=parent)

    def build(self, query: Query, build: Callable[[set[DepKey]], bytes | None]) -> Entry:
        """Build the answer to ``query`` (``build`` adds what it read to the set it is given)
        and keep it as a template with those dependencies; PASS when ``build`` gives None.

        Called on a miss only, so that a hit costs one dict lookup and no closure."""
        started = INLINE_BUILDS.begin()
        deps: set[DepKey] = set()
        response = build(deps)
        INLINE_BUILDS.end(started)
        tpl: Entry = PASS if response is None else template_for(response, query)
        self.templates.put(query.key, tpl, isinstance(response, Synthesized), deps)
        return tpl

    def keep(self, query: Query, response: Made, deps: Iterable[DepKey] = ()) -> Entry:
        """Keep an answer made without a build (a negative answer written on the wire, or
        PASS) as the template for ``query``'s key, depending on ``deps``."""
        tpl: Entry = PASS if response is PASS else template_for(response, query)
        self.templates.put(query.key, tpl, isinstance(response, Synthesized), deps)
        return tpl


class TemplateHandler(Handler):
    """A handler that answers with templates: :meth:`template` finds one, this class serves it
    on the fast path and the slow path alike."""

    def template(self, req: Request) -> Entry:
        """The template that answers ``req``, or PASS to hand it to the next handler."""
        raise NotImplementedError

    @passes_later
    def fast(self, req: Request) -> bytes | None:
        try:
            tpl = self.template(req)
        except Deferred:
            return SLOW  # not built yet, and the fast path's budget for building is spent
        if tpl is PASS:
            resp = self.next.fast(req)
            # The answer is another handler's, and that this one passed depends on its data.
            req.memo = None
            return resp
        req.answered_by = self.plugin
        # (A stand-in renders per query: its answers are never sent from the answer memo.)
        req.memo = tpl.stamp if type(tpl) is Template else None
        return tpl.render(req.query)

    async def serve(self, req: Request) -> bytes:
        builds = INLINE_BUILDS
        builds.serving = True
        try:
            tpl = self.template(req)
        finally:
            builds.serving = False
        if tpl is PASS:
            return await self.next.serve(req)
        req.answered_by = self.plugin
        return tpl.render(req.query)


class MemoryHandler(TemplateHandler, Generic[DataT]):
    """A handler whose data changes whole: a generation of templates per version of it."""

    def __init__(self, zones: ZoneSet, data: DataT) -> None:
        self.zones = zones
        self.generation: Generation[DataT] = Generation(data)

    @property
    def data(self) -> DataT:
        return self.generation.data

    def swap(self, data: DataT) -> None:
        """Replace the data; queries after this line see only the new data and its templates."""
        old = self.generation
        self.generation = Generation(data)
        old.templates.retire()

    def build(self, req: Request, data: DataT, zone: str) -> bytes | None:
        """The full response to ``req`` from ``data``, or None to pass the query on.

        Runs once per distinct question shape (name, type, class, EDNS/DO/RD/CD) per data
        generation; must be a pure function of those and the data. An answer made up for the
        asked name is returned as :class:`Synthesized`.
        """
        raise NotImplementedError

    def wire_answer(self, req: Request, data: DataT, zone: str) -> WireAnswer:
        """The answer when it is one written on the wire without dnspython (a negative one:
        see :func:`negative_answer`), or PASS; None when only :meth:`build` can tell. Tried
        first, outside the fast path's build budget: it must cost a few µs, and give what
        build() would."""
        return None

    def template(self, req: Request) -> Entry:
        q = req.query
        zone = self.zones.match(q.lname)
        if zone is None:
            return PASS
        gen = self.generation
        tpl = gen.templates.get(q.key)
        if tpl is None:
            response = self.wire_answer(req, gen.data, zone)
            if response is None:
                started = INLINE_BUILDS.begin()
                response = self.build(req, gen.data, zone)
                INLINE_BUILDS.end(started)
            tpl = PASS if response is None or response is PASS else template_for(response, q)
            gen.templates.put(q.key, tpl, isinstance(response, Synthesized))
        return tpl


__all__ = ["INLINE_BUILDS", "PASS", "PER_QUERY_CAPACITY", "REFUSED", "SERVFAIL", "Answer", "Deferred",
           "DependentGeneration", "DependentTemplateTable", "Entry", "Generation", "InlineBuilds", "Made",
           "MemoryHandler", "SoaRecord", "Synthesized", "TemplateHandler", "TemplateTable", "WireAnswer",
           "bare_answer", "negative_answer"]

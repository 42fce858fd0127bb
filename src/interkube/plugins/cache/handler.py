"""The cache handler: hits from stored wire bytes on the fast path; misses stored as they pass.

Two bounded caches (success and denial) share one lookup table keyed by the query's wire key
(lower-cased name, type, class, EDNS/DO/RD/CD shape), so a hit costs one dict lookup, a clock
read and a template render. Each cache keeps its insertion order in an OrderedDict: when it is
full the oldest entry goes, in O(1) (a plain dict's ``next(iter(d))`` walks over the holes left
by earlier deletions, which costs microseconds at this size).

Refreshes (prefetch, serve_stale) run in the background, one at a time per key: a refresh in
flight is shared by everything that would start another.
"""

from __future__ import annotations

import array
import asyncio
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from interkube.dns.names import ZoneSet
from interkube.dns.wire import RCODE_NOERROR, RCODE_NXDOMAIN, ZONE_TRANSFERS, Query, Template
from interkube.pkg.datagrams import Stamp, StampType
from interkube.pkg.metrics import NAMESPACE
from interkube.pkg.shared import Kind
from interkube.plugin import later
from interkube.plugin.handler import LATER, Handler, passes_later
from interkube.plugin.request import Request
from interkube.plugins.cache.entry import (
    DROP,
    KIND_NAMES,
    NO_RECORDS_TTL,
    STALE_TTL,
    SUCCESS,
    Analysis,
    Entry,
    analyse,
    patch_ttls,
)
from interkube.plugins.cache.parse import DEFAULT_STALE_RECHECK, DEFAULT_STALE_VERIFY_TIMEOUT, CacheConfig

if TYPE_CHECKING:
    from prometheus_client.core import Metric

    from interkube.plugin.metrics import Metrics

log = logging.getLogger("interkube.plugin.cache")

#: RFC 8767 section 5, "client response timer": how long a `verify` query waits for the next
#: plugin before it gets the stale answer; the refresh carries on in the background (serve_stale's
#: VERIFY_TIMEOUT argument sets it).
STALE_CLIENT_TIMEOUT = DEFAULT_STALE_VERIFY_TIMEOUT
#: RFC 8767 section 5, "failure recheck timer": after a failed refresh, stale answers are given
#: without asking the next plugin again for this long (serve_stale's FAILURE_RECHECK).
STALE_RECHECK = DEFAULT_STALE_RECHECK
#: Answers that replace a stale entry (RFC 8767 section 4): anything else keeps it.
FRESH_RCODES = frozenset({RCODE_NOERROR, RCODE_NXDOMAIN})


class CacheStats:
    """Counters kept as plain ints on the hot path and published at scrape time.

    One per server and zones, shared through the process services so that a reload, which
    builds a new handler with empty caches, does not reset the counters.
    """

    __slots__ = ("hits", "misses", "memo_misses", "evictions", "prefetches", "served_stale", "drops", "owner")

    def __init__(self) -> None:
        #: By kind: success, denial. An array of 64-bit ints: the UDP answer memo adds the hits
        #: it sends to it (see CacheHandler._memo_stamp).
        self.hits = array.array("q", (0, 0))
        self.misses = 0
        #: Misses the UDP answer memo sent (answers of zones the cache is told not to keep):
        #: an array of one 64-bit int, which it adds to.
        self.memo_misses = array.array("q", (0,))
        self.evictions = [0, 0]
        self.prefetches = 0
        self.served_stale = 0
        self.drops = 0              # responses whose question did not match the query
        self.owner: object = None   # the handler whose collect() publishes these

    @property
    def all_misses(self) -> int:
        """Misses counted on the fast and slow paths and by the answer memo."""
        return self.misses + self.memo_misses[0]



CACHE_STATS = Kind('cache statistics', CacheStats)

class CacheHandler(Handler):
    plugin = "cache"
    # A fresh entry's answer is the same bytes until its rendered second ends (Entry.until): the
    # stamp of a hit holds until then, counts the memo's hits in the stats, and is revoked when
    # the entry goes. Every other outcome (a miss, stale or prefetch work) sets no stamp.
    memo_safe = True

    def __init__(self, cfg: CacheConfig, zones: Iterable[str], *, server: str = "",
                 metrics: Metrics | None = None, stats: CacheStats | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.zones = ZoneSet(zones)
        self.zones_label = ",".join(self.zones)
        self.server = server
        self.metrics = metrics
        self.stats = stats if stats is not None else CacheStats()
        self.hits = self.stats.hits     # the list itself: one attribute load on a hit
        #: Seconds, monotonic. Tests replace it to move time.
        self.clock = clock
        self.entries: dict[bytes, Entry] = {}
        self.order: tuple[OrderedDict[bytes, None], ...] = (OrderedDict(), OrderedDict())
        self.capacity = (cfg.success.capacity, cfg.denial.capacity)
        self.buckets = (cfg.success, cfg.denial)
        self.disabled = (ZoneSet(cfg.disable_success), ZoneSet(cfg.disable_denial))
        self.prefetch_amount = cfg.prefetch.amount
        self.refreshing: dict[bytes, asyncio.Task[bytes | None]] = {}
        stale = cfg.serve_stale
        self.recheck = stale.recheck if stale is not None else STALE_RECHECK
        self.prefer_positive = stale is not None and stale.prefer_positive

    # -- fast path -------------------------------------------------------------------------

    @passes_later
    def fast(self, req: Request) -> bytes | None:
        q = req.query
        e = self.entries.get(q.key)
        if e is not None:
            now = self.clock()
            if now < e.until:
                self.hits[e.kind] += 1
                if self.prefetch_amount:
                    self._count_for_prefetch(e, req, now)
                else:
                    req.memo = self._memo_stamp(e)
                return e.tpl.render(q)
            return self._fast_aged(e, req, now)
        return self._fast_miss(req, None)

    def _memo_stamp(self, e: Entry) -> Stamp | None:
        """The stamp of ``e``'s answer for the rest of its rendered second: its hits counted in
        the stats (None under a clock of the tests' own: the memo reads the real one)."""
        stamp = e.stamp
        if stamp is None and self.clock is time.monotonic:
            stamp = e.stamp = StampType(None, e.until, self.hits, e.kind)
        return stamp

    def _fast_aged(self, e: Entry, req: Request, now: float) -> bytes | None:
        """An entry whose rendered second has passed: age it, or deal with its expiry."""
        if now < e.expires:
            return self._hit(e, req, now)
        resp = self._fast_expired(e, req, now)
        req.memo = None  # (a stale answer, or the next plugin's: see _fast_miss)
        return resp

    def _fast_expired(self, e: Entry, req: Request, now: float) -> bytes | None:
        stale = self.cfg.serve_stale
        if stale is None or not self._stale_usable(e, now):
            return self._fast_miss(req, e)
        if not stale.verify:
            return self._serve_stale(e, req, now, refresh=True)
        if now < e.failed_until:
            return self._serve_stale(e, req, now, refresh=False)
        # verify: the next plugin first; it may answer from memory (file, hosts below us). Not
        # on the callback path (interkube.plugin.later): the stale answer depends on its outcome.
        req.replier = None
        resp = self.next.fast(req)
        if resp is None:
            return None
        if self._refreshes(resp):
            self.stats.misses += 1
            return self._store(req, resp, now)
        e.failed_until = now + self.recheck
        return self._serve_stale(e, req, now, refresh=False)

    def _fast_miss(self, req: Request, expired: Entry | None) -> bytes | None:
        resp = self.next.fast(req)
        # A stored answer is not the next plugin's as it stands (its TTLs are the lifetime's),
        # and the next query is a hit: no stamp for it. (For what is not stored: see below.)
        stamp = req.memo
        req.memo = None
        if resp is None:
            return None  # nothing counted or stored: the slow path runs the chain again
        q = req.query
        if not self._covers(q):
            req.memo = stamp  # (not the cache's name: passed on by the name alone, not counted)
            return resp
        if stamp is not None and expired is None and type(resp) is bytes and self._disabled_for(q, resp):
            # Never kept (a `disable` line): every such query is the next plugin's answer and a
            # miss, which the memo counts through a stamp under the next plugin's.
            self.stats.misses += 1
            req.memo = StampType(stamp, counter=self.stats.memo_misses, slot=0)
            return resp
        if resp is LATER:  # stored when it comes (interkube.plugin.later)
            later.after(req, functools.partial(self._store_miss, expired=expired))
            return resp
        return self._store_miss(req, resp, expired)

    def _disabled_for(self, q: Query, resp: bytes) -> bool:
        """Whether ``resp`` is an answer of a kind the cache never keeps for ``q``'s name."""
        a = analyse(resp, q)
        return isinstance(a, Analysis) and self.disabled[a.kind].match(q.lname) is not None

    def _store_miss(self, req: Request, resp: bytes, expired: Entry | None) -> bytes:
        self.stats.misses += 1
        out = self._store(req, resp, self.clock())
        if expired is not None:
            self._discard(expired)
        return out

    # -- slow path -------------------------------------------------------------------------

    async def serve(self, req: Request) -> bytes:
        q = req.query
        if not self._covers(q):
            return await self.next.serve(req)
        now = self.clock()
        e = self.entries.get(q.key)
        if e is not None:
            if now < e.expires:
                return self._hit(e, req, now)
            if self._stale_usable(e, now):
                return await self._serve_expired(e, req, now)
            self._discard(e)
        self.stats.misses += 1
        resp = await self.next.serve(req)
        return self._store(req, resp, self.clock())

    async def _serve_expired(self, e: Entry, req: Request, now: float) -> bytes:
        stale = self.cfg.serve_stale
        assert stale is not None
        if not stale.verify:
            return self._serve_stale(e, req, now, refresh=True)
        if now < e.failed_until:
            return self._serve_stale(e, req, now, refresh=False)
        task = self._refresh(req, prefetch=False)
        try:
            resp = await asyncio.wait_for(asyncio.shield(task), stale.verify_timeout)
        except TimeoutError:
            resp = None
        if resp is not None and self._refreshes(resp):
            self.stats.misses += 1
            fresh = self.entries.get(e.key)
            if fresh is not None and fresh is not e:
                return self._current(fresh, self.clock()).render(req.query)
            return resp
        return self._serve_stale(e, req, self.clock(), refresh=False)

    # -- answering from an entry -----------------------------------------------------------

    def _hit(self, e: Entry, req: Request, now: float) -> bytes:
        """A fresh entry's answer (the fast path inlines this for its common case)."""
        self.hits[e.kind] += 1
        tpl = self._current(e, now)
        if self.prefetch_amount:
            self._count_for_prefetch(e, req, now)
        else:
            req.memo = self._memo_stamp(e)
        return tpl.render(req.query)

    @staticmethod
    def _current(e: Entry, now: float) -> Template:
        """The entry's template for this second of its life."""
        if e.until <= now < e.expires:
            e.age(now)
        return e.tpl

    def _refreshes(self, resp: bytes) -> bool:
        """Whether the next plugin's answer replaces a stale entry (RFC 8767 section 4: NOERROR
        or NXDOMAIN; with prefer_positive, only a NOERROR with answer records, CoreDNS's rule
        reduced to what the header says)."""
        if self.prefer_positive:
            return resp[3] & 0x0F == RCODE_NOERROR and resp[6:8] != b"\x00\x00"
        return resp[3] & 0x0F in FRESH_RCODES

    def _stale_usable(self, e: Entry, now: float) -> bool:
        """Whether an expired entry may still be served; a SERVFAIL is no data to keep serving."""
        stale = self.cfg.serve_stale
        return stale is not None and not e.servfail and now - e.expires < stale.duration

    def _serve_stale(self, e: Entry, req: Request, now: float, *, refresh: bool) -> bytes:
        self.hits[e.kind] += 1
        self.stats.served_stale += 1
        if refresh and now >= e.failed_until:
            self._refresh(req, prefetch=False)
        return e.stale.render(req.query)

    def _count_for_prefetch(self, e: Entry, req: Request, now: float) -> None:
        """CoreDNS's popularity rule: AMOUNT hits with no gap of DURATION, TTL under PERCENTAGE."""
        pf = self.cfg.prefetch
        if now - e.last_hit > pf.duration:
            e.hits = 1
        else:
            e.hits += 1
        e.last_hit = now
        if e.hits >= pf.amount and not e.servfail and e.remaining(now) <= e.threshold:
            self._refresh(req, prefetch=True)

    # -- storing ---------------------------------------------------------------------------

    def _covers(self, q: Query) -> bool:
        # Zone transfers are never cached (CoreDNS's "meta" responses).
        return q.qtype not in ZONE_TRANSFERS and self.zones.match(q.lname) is not None

    def _lifetime(self, a: Analysis) -> float:
        if a.servfail:
            return self.cfg.servfail_ttl
        return self.buckets[a.kind].clamp(NO_RECORDS_TTL if a.ttl < 0 else a.ttl)

    def _store(self, req: Request, resp: bytes, now: float) -> bytes:
        """Keep ``resp`` if it may be cached; return what to send (TTLs set to the lifetime)."""
        q = req.query
        a = analyse(resp, q)
        if a is None:
            return resp
        if a is DROP:
            self.stats.drops += 1
            return resp
        assert isinstance(a, Analysis)
        lifetime = self._lifetime(a)
        if lifetime <= 0 or not self.capacity[a.kind] or self.disabled[a.kind].match(q.lname) is not None:
            return resp
        if a.servfail:
            old = self.entries.get(q.key)
            if old is not None and not old.servfail and (now < old.expires or self._stale_usable(old, now)):
                # A failed refresh never replaces an answer that can still be given.
                old.failed_until = now + self.recheck
                return resp
        if self.prefer_positive and not _answering(a.kind, a.wire):
            old = self.entries.get(q.key)
            if old is not None and _answering(old.kind, old.prefix) \
                    and (now < old.expires or self._stale_usable(old, now)):
                # serve_stale_policy prefer_positive: the answer that can still be given stays.
                return resp
        e = Entry(q.key, a.kind, a.servfail, a.wire, q, a.offsets, lifetime, now,
                  keepttl=self.cfg.keepttl, prefetch_percentage=self.cfg.prefetch.percentage,
                  stale_ttl=self.cfg.serve_stale.ttl if self.cfg.serve_stale is not None else STALE_TTL)
        self._insert(e)
        # The first answer carries the cache lifetime too (as CoreDNS), so the TTL a client
        # sees does not jump between the miss and the hits that follow.
        return patch_ttls(resp, a.offsets, e.ttl)

    def _insert(self, e: Entry) -> None:
        key = e.key
        entries = self.entries
        old = entries.pop(key, None)
        if old is not None:
            del self.order[old.kind][key]
            old.retire()
        order = self.order[e.kind]
        if len(order) >= self.capacity[e.kind]:
            victim, _ = order.popitem(last=False)
            entries.pop(victim).retire()
            self.stats.evictions[e.kind] += 1
        order[key] = None
        entries[key] = e

    def _discard(self, e: Entry) -> None:
        """Drop an expired entry that was not replaced (a removal, not an eviction)."""
        if self.entries.get(e.key) is e:
            del self.entries[e.key]
            del self.order[e.kind][e.key]
            e.retire()

    # -- background refresh ----------------------------------------------------------------

    def _refresh(self, req: Request, *, prefetch: bool) -> asyncio.Task[bytes | None]:
        """The refresh of ``req``'s key: the one in flight, or a new one on a copy of ``req``."""
        key = req.query.key
        task = self.refreshing.get(key)
        if task is not None:
            return task
        copy = Request(req.wire, req.query, req.client, req.proto, req.local)
        copy.route = req.route
        task = asyncio.get_running_loop().create_task(self._run_refresh(copy))
        self.refreshing[key] = task
        task.add_done_callback(functools.partial(self._refresh_done, key))
        if prefetch:
            self.stats.prefetches += 1
        return task

    def _refresh_done(self, key: bytes, task: asyncio.Task[bytes | None]) -> None:
        if self.refreshing.get(key) is task:
            del self.refreshing[key]

    async def _run_refresh(self, req: Request) -> bytes | None:
        key = req.query.key
        old = self.entries.get(key)
        try:
            resp = await self.next.serve(req)
        except Exception as exc:  # a failed refresh leaves the entry as it is
            log.debug("cache refresh of %s failed: %s", req.qname_text, exc)
            if old is not None and self.entries.get(key) is old:
                old.failed_until = self.clock() + self.recheck
            return None
        now = self.clock()
        self._store(req, resp, now)
        new = self.entries.get(key)
        if old is not None and new is not None and new is not old:
            # Popularity carries over to the new entry (CoreDNS's freq.Reset after a prefetch).
            new.hits = old.hits
            new.last_hit = now
        return resp

    # -- lifecycle and metrics -------------------------------------------------------------

    async def start(self) -> None:
        self.stats.owner = self
        if self.metrics is not None:
            self.metrics.add_source(self, self.collect)

    async def stop(self) -> None:
        if self.metrics is not None:
            self.metrics.remove_source(self)
        tasks = list(self.refreshing.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def __len__(self) -> int:
        return len(self.entries)

    def collect(self) -> list[Metric]:
        """The cache's metric families, CoreDNS's names under the interkube namespace."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        st = self.stats
        if st.owner is not self:
            return []  # a reload replaced this handler; its successor publishes the counters
        server, zones, view = self.server, self.zones_label, ""
        typed = ["server", "type", "zones", "view"]
        plain = ["server", "zones", "view"]
        p = f"{NAMESPACE}_cache_"
        entries = GaugeMetricFamily(p + "entries", "The number of elements in the cache.", labels=typed)
        hits = CounterMetricFamily(p + "hits", "The count of cache hits.", labels=typed)
        evictions = CounterMetricFamily(p + "evictions", "The count of cache evictions.", labels=typed)
        for kind, name in enumerate(KIND_NAMES):
            entries.add_metric([server, name, zones, view], len(self.order[kind]))
            hits.add_metric([server, name, zones, view], st.hits[kind])
            evictions.add_metric([server, name, zones, view], st.evictions[kind])
        families: list[Metric] = [entries, hits, evictions]
        for name, doc, value in (
            ("requests", "The count of cache requests.", st.hits[0] + st.hits[1] + st.all_misses),
            ("misses", "The count of cache misses.", st.all_misses),
            ("prefetch", "The number of times the cache has prefetched a cached item.", st.prefetches),
            ("served_stale", "The number of requests served from stale cache entries.", st.served_stale),
            ("drops", "The number of responses not cached because their question did not match.", st.drops),
        ):
            family = CounterMetricFamily(p + name, doc, labels=plain)
            family.add_metric([server, zones, view], value)
            families.append(family)
        return families


def _answering(kind: int, head: bytes) -> bool:
    """A success with records in its answer section (``head`` holds the message header)."""
    return kind == SUCCESS and head[6:8] != b"\x00\x00"

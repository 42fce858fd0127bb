"""The forward handler: pick upstreams by policy, send, retry, pass the answer through.

Several `forward` directives in one server block are one handler each, chained in the order the
Corefile lists them (CoreDNS 1.15: each forward's next is the following forward, the last one's
the plugin after forward). A query that a forward does not match (FROM, `except`) goes on to the
next handler, so the first forward whose FROM matches serves it; `next RCODE...` and
`next_on_nodata` hand an answer on only to a following forward (with none, the answer stands).
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Iterable
from typing import TYPE_CHECKING

from interkube.dns.message import rcode_name
from interkube.dns.names import ZoneSet, to_wire
from interkube.dns.wire import RCODE_REFUSED, error_response, rcode_of
from interkube.errors import NoHealthyUpstream, UpstreamError, UpstreamTimeout
from interkube.pkg.metrics import DURATION_BUCKETS, NAMESPACE
from interkube.pkg.shared import Kind
from interkube.plugin.handler import LATER, SLOW, Handler, passes_later
from interkube.plugin.later import take_resume
from interkube.plugin.metrics import Metrics
from interkube.plugin.request import Request
from interkube.plugins.forward.flight import Flight, launch
from interkube.plugins.forward.parse import ForwardConfig
from interkube.upstream.upstream import Upstream, UpstreamGroup, UpstreamStats

if TYPE_CHECKING:  # prometheus_client loads at the first scrape (see interkube.plugin.metrics)
    from prometheus_client.core import Metric

#: The whole budget for one query, as CoreDNS's forward (defaultTimeout).
QUERY_DEADLINE = 5.0
#: Failed attempts per upstream per query unless `max_connect_attempts` says otherwise (CoreDNS's
#: default): enough to ride out one lost datagram, bounded so that a dead upstream answering
#: "port unreachable" at once does not make us spin until the deadline.
ATTEMPTS_PER_UPSTREAM = 2
#: Queries one forward has on the callback path at once (see flight.py); past it they take the
#: slow path, which has its own bounds (the listener's backlog and in-flight limit). Bounds the
#: queries that time out together on a silent upstream and go to the slow path in one sweep.
MAX_CALLBACK_INFLIGHT = 1024


class ForwardStats:
    __slots__ = ("max_concurrent_rejects", "no_healthy")

    def __init__(self) -> None:
        self.max_concurrent_rejects = 0
        self.no_healthy = 0



def _no_answer(resp: bytes) -> bool:
    """NOERROR with an empty answer section (NODATA), as next_on_nodata means it."""
    return len(resp) >= 8 and resp[6] == 0 and resp[7] == 0


FORWARD_STATS = Kind('forward statistics', ForwardStats)
UPSTREAM_STATS = Kind('upstream statistics', UpstreamStats)

class ForwardHandler(Handler):
    plugin = "forward"
    # Its own answers carry no stamp (it never sets req.memo), so the answer memo never skips
    # what it does for a query; a name it does not forward (`except`) passes on by the name
    # alone. So a cache in front of it may have its hits sent from the memo.
    memo_safe = True

    def __init__(self, cfg: ForwardConfig, upstreams: UpstreamGroup, *,
                 stats: ForwardStats | None = None, metrics: Metrics | None = None) -> None:
        self.cfg = cfg
        self.group = upstreams
        self.upstreams = upstreams.members
        self.from_zones = ZoneSet(cfg.from_zones)
        self.except_zones = ZoneSet(cfg.except_zones)
        self.inflight = 0
        self.stats = stats or ForwardStats()
        self.metrics = metrics
        self._rr = itertools.count()
        # An `except` name never excludes FROM itself (CoreDNS: `forward example.org ... { except
        # example.org }` still forwards example.org).
        self._from_names = frozenset(to_wire(z) for z in cfg.from_zones)
        #: Whether every name matches (FROM the root, no `except`: the usual `forward . ...`), so
        #: that fast() skips matches() and its two zone lookups, a third of its calls per query.
        self._matches_all = self._from_names == {b"\x00"} and not cfg.except_zones
        #: See callback_path() (known once the chain is linked).
        self._callback_path: bool | None = None
        #: The whole budget of a query, and of its first attempt (seconds).
        self.deadline_seconds = QUERY_DEADLINE
        self.attempt_seconds = min(cfg.read_timeout, QUERY_DEADLINE)

    def matches(self, lname: bytes) -> bool:
        if self.from_zones.match(lname) is None:
            return False
        return self.except_zones.match(lname) is None or lname in self._from_names

    @passes_later
    def fast(self, req: Request) -> bytes | None:
        q = req.query
        if not self._matches_all and not self.matches(q.lname):
            return self.next.fast(req)
        # The callback path (interkube.plugins.forward.flight) for a plain UDP query; else the
        # slow path, which needs the network.
        if req.replier is None or not self.later_ok or not (self._callback_path or self.callback_path()):
            return SLOW
        max_concurrent = self.cfg.max_concurrent
        if (max_concurrent and self.inflight >= max_concurrent) or self.inflight >= MAX_CALLBACK_INFLIGHT:
            return SLOW  # the slow path refuses it, or it waits in the listener's backlog
        if launch(self, req, req.wire[12:q.question_end]):
            return LATER
        return SLOW

    def callback_path(self) -> bool:
        """Whether this forward may send a UDP client's query from the socket callback: plain
        UDP upstreams only (no TLS, HTTPS or force_tcp), and no `next` to a following forward
        (which the slow path's serve() hands answers to)."""
        ok = self._callback_path
        if ok is None:
            cfg = self.cfg
            ok = self._callback_path = (
                not cfg.force_tcp and all(up.udp is not None and up.doh is None for up in self.upstreams)
                and not ((cfg.next_rcodes or cfg.next_on_nodata) and isinstance(self.next, ForwardHandler)))
        return ok

    async def serve(self, req: Request) -> bytes:
        q = req.query
        if not self.matches(q.lname):
            return await self.next.serve(req)
        cfg = self.cfg
        if cfg.max_concurrent and self.inflight >= cfg.max_concurrent:
            self.stats.max_concurrent_rejects += 1
            return error_response(req.wire, RCODE_REFUSED, q)
        self.inflight += 1
        try:
            resp = await self._forward(req)
        finally:
            self.inflight -= 1
        if (cfg.next_rcodes or cfg.next_on_nodata) and isinstance(self.next, ForwardHandler):
            rcode = rcode_of(resp)
            if rcode in cfg.next_rcodes or (cfg.next_on_nodata and rcode == 0 and _no_answer(resp)):
                return await self.next.serve(req)
        req.answered_by = "forward"
        return req.wire[:2] + resp[2:]

    def order(self) -> list[Upstream]:
        ups = self.upstreams
        policy = self.cfg.policy
        if policy == "sequential" or len(ups) == 1:
            return ups
        if policy == "round_robin":
            k = next(self._rr) % len(ups)
            return ups[k:] + ups[:k]
        return random.sample(ups, len(ups))

    async def _forward(self, req: Request) -> bytes:
        """The upstreams' answer, as CoreDNS's forward gets it: the upstreams in the policy's
        order, again from the first when the list is done, until one answers with an rcode that
        `failover` does not list, the failed attempts reach `max_connect_attempts`, or the
        query's 5 seconds are up. Down upstreams are skipped; when all are, one is tried at
        random (or, with failfast_all_unhealthy_upstreams, none). After a failover on every
        upstream the last answer stands."""
        cfg = self.cfg
        tcp = cfg.force_tcp or (req.proto != "udp" and not cfg.prefer_udp)
        loop = asyncio.get_running_loop()
        # The lower-cased question section, which answers are matched against.
        question = req.wire[12:req.query.question_end].lower()
        n = len(self.upstreams)
        max_attempts = ATTEMPTS_PER_UPSTREAM * n if cfg.max_connect_attempts is None else cfg.max_connect_attempts
        last: BaseException | None
        flight = take_resume(req)
        truncated: Flight | None = None
        if isinstance(flight, Flight) and flight.handler is self:
            # The callback path made the first attempt (see flight.py): carry on from there.
            # The down upstreams before the one tried were skipped.
            deadline, ups, i, skipped = flight.deadline, flight.ups, flight.k + 1, flight.k
            attempts, failovers, last = flight.attempts, flight.failovers, flight.error
            if flight.truncated:
                truncated = flight
            flight = None
        else:
            deadline = loop.time() + self.deadline_seconds
            ups = self.order()
            attempts = skipped = failovers = i = 0
            last = None
        while True:
            if truncated is not None:
                # The answer over UDP was truncated: the whole of it over TCP, as exchange() does.
                up = truncated.up
                attempt = up.retry_truncated(req.wire, self.attempt_seconds, truncated.started)
                truncated = None
            else:
                remaining = deadline - loop.time()
                if remaining <= 0 or (max_attempts and attempts >= max_attempts):
                    break
                if i >= len(ups):
                    i = skipped = 0
                up = ups[i]
                i += 1
                if up.down:
                    skipped += 1
                    if skipped < n:
                        continue
                    self.stats.no_healthy += 1
                    if cfg.failfast_all_unhealthy:
                        raise NoHealthyUpstream(f"all {n} upstreams are down")
                    # Every upstream looks down: assume the health checks are what is broken and try one.
                    up = random.choice(self.upstreams)
                attempt = up.exchange(req.wire, tcp, min(cfg.read_timeout, remaining), question)
            try:
                resp = await attempt
            except UpstreamError as exc:
                last = exc
                up.kick_health_check(cfg.force_tcp)
                attempts += 1
                if skipped >= n:
                    break  # the one tried at random failed too
                continue
            if cfg.failover_rcodes and rcode_of(resp) in cfg.failover_rcodes:
                failovers += 1
                if failovers < n:
                    continue
            return resp
        if last is not None:
            try:
                raise last
            finally:
                # Not left in this frame, which its traceback holds: that reference cycle (the
                # request, its futures and frames: 17 objects) would wait for the garbage
                # collector after every failed query, and under a failing upstream make its
                # collections of the oldest generation pauses of 100 ms and more (issue 19).
                last = None
        raise UpstreamTimeout(", ".join(u.name for u in self.upstreams), "deadline passed")

    async def start(self) -> None:
        if self.metrics is not None:
            live = _LIVE.setdefault(self.metrics, [])
            live.append(self)
            # One source for every forward of the process: two forwards (in one block or in
            # two) must not report the same sample twice (an upstream both use, the unlabelled
            # counters), which a scrape would refuse.
            metrics = self.metrics
            self.metrics.add_source(_LIVE_KEY, lambda: collect_all(_LIVE.get(metrics, [])))
        self.group.start()

    async def stop(self) -> None:
        if self.metrics is not None:
            live = _LIVE.get(self.metrics, [])
            if self in live:
                live.remove(self)
            if not live:
                _LIVE.pop(self.metrics, None)
                self.metrics.remove_source(_LIVE_KEY)
        await self.group.close()

    def collect(self) -> Iterable[Metric]:
        """This forward's metrics alone."""
        return collect_all([self])


#: The running forward handlers, per metrics registry (one per process; tests run several).
_LIVE: dict[Metrics, list[ForwardHandler]] = {}
_LIVE_KEY = "forward"


def collect_all(handlers: Iterable[ForwardHandler]) -> Iterable[Metric]:
    """CoreDNS's forward metrics, under the interkube_ namespace, for all of ``handlers``: each
    upstream once (by name: its counters are kept by name, shared by every forward that uses it)
    and each handler's counters once (a reload's new handler shares its predecessor's)."""
    from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

    handlers = list(handlers)
    upstreams = list({up.name: up for h in handlers for up in h.upstreams}.values())
    fstats = list({id(h.stats): h.stats for h in handlers}.values())
    ns = NAMESPACE
    requests = CounterMetricFamily(f"{ns}_forward_requests", "Counter of requests made per upstream.",
                                   labels=["to"])
    responses = CounterMetricFamily(f"{ns}_forward_responses", "Counter of responses received per upstream.",
                                    labels=["to", "rcode"])
    durations = HistogramMetricFamily(f"{ns}_forward_request_duration_seconds",
                                      "Histogram of the time each request took.", labels=["to", "rcode"])
    hc = CounterMetricFamily(f"{ns}_forward_healthcheck_failures", "Counter of the number of failed healthchecks.",
                             labels=["to"])
    closed_early = CounterMetricFamily(f"{ns}_forward_conn_closed_early",
                                       "Counter of TCP/TLS connections the upstream closed with queries "
                                       "unanswered.", labels=["to"])
    retries = CounterMetricFamily(f"{ns}_forward_conn_retries",
                                  "Counter of queries sent again on a fresh connection after the upstream "
                                  "closed theirs.", labels=["to"])
    for up in upstreams:
        st = up.stats
        requests.add_metric([up.name], st.requests)
        hc.add_metric([up.name], st.healthcheck_failures)
        closed_early.add_metric([up.name], st.stream.closed_early)
        retries.add_metric([up.name], st.stream.retried)
        for rcode, e in st.responses.items():
            label = rcode_name(rcode)
            responses.add_metric([up.name, label], e[0])
            running = 0.0
            buckets = []
            for bound, n in zip(DURATION_BUCKETS, e[2:], strict=False):  # e[-1] counts the slower ones
                running += n
                buckets.append((repr(float(bound)), running))
            buckets.append(("+Inf", e[0]))
            durations.add_metric([up.name, label], buckets, e[1])
    yield from (requests, responses, durations, hc, closed_early, retries)
    broken = CounterMetricFamily(f"{ns}_forward_healthcheck_broken",
                                 "Counter of the number of complete failures of the healthchecks.")
    broken.add_metric([], sum(st.no_healthy for st in fstats))
    yield broken
    rejects = CounterMetricFamily(f"{ns}_forward_max_concurrent_rejects",
                                  "Counter of the number of queries rejected because the concurrent queries "
                                  "were at maximum.")
    rejects.add_metric([], sum(st.max_concurrent_rejects for st in fstats))
    yield rejects

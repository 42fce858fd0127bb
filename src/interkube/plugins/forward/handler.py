"""The forward handler: pick upstreams by policy, send, retry, pass the answer through."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from interkube.dns.message import rcode_name
from interkube.dns.names import ZoneSet
from interkube.dns.wire import RCODE_REFUSED, error_response, rcode_of
from interkube.errors import NoHealthyUpstream, UpstreamError, UpstreamTimeout
from interkube.pkg.metrics import DURATION_BUCKETS, NAMESPACE
from interkube.pkg.shared import Kind
from interkube.plugin.handler import SLOW, Handler
from interkube.plugin.metrics import Metrics
from interkube.plugin.request import Request
from interkube.plugins.forward.parse import ForwardConfig
from interkube.upstream.upstream import Upstream, UpstreamGroup, UpstreamStats

#: The whole budget for one query, as CoreDNS's forward (defaultTimeout).
QUERY_DEADLINE = 5.0
#: One attempt at one upstream (CoreDNS's read timeout).
ATTEMPT_TIMEOUT = 2.0
#: Attempts per upstream per query: enough to ride out one lost datagram, bounded so that a
#: dead upstream answering "port unreachable" at once does not make us spin until the deadline.
ATTEMPTS_PER_UPSTREAM = 2


class ForwardStats:
    __slots__ = ("max_concurrent_rejects", "no_healthy")

    def __init__(self) -> None:
        self.max_concurrent_rejects = 0
        self.no_healthy = 0



FORWARD_STATS = Kind('forward statistics', ForwardStats)
UPSTREAM_STATS = Kind('upstream statistics', UpstreamStats)

class ForwardHandler(Handler):
    plugin = "forward"

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

    def matches(self, lname: bytes) -> bool:
        return self.from_zones.match(lname) is not None and self.except_zones.match(lname) is None

    def fast(self, req: Request) -> bytes | None:
        if self.matches(req.query.lname):
            return SLOW  # needs the network
        return self.next.fast(req)

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
        if cfg.next_rcodes and rcode_of(resp) in cfg.next_rcodes:
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
        cfg = self.cfg
        tcp = cfg.force_tcp or (req.proto != "udp" and not cfg.prefer_udp)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + QUERY_DEADLINE
        # The lower-cased question section, which answers are matched against.
        question = req.wire[12:req.query.question_end].lower()
        candidates = [u for u in self.order() if not u.down]
        if not candidates:
            self.stats.no_healthy += 1
            if cfg.failfast_all_unhealthy:
                raise NoHealthyUpstream(f"all {len(self.upstreams)} upstreams are down")
            # Every upstream looks down: assume the health checks are what is broken and try one.
            candidates = [random.choice(self.upstreams)]
        last: UpstreamError | None = None
        for _round in range(ATTEMPTS_PER_UPSTREAM):
            for up in candidates:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise last or UpstreamTimeout(str(up.addr), "deadline passed")
                try:
                    return await up.exchange(req.wire, tcp, min(ATTEMPT_TIMEOUT, remaining), question)
                except UpstreamError as exc:
                    last = exc
                    up.kick_health_check(cfg.force_tcp)
        assert last is not None
        raise last

    async def start(self) -> None:
        if self.metrics is not None:
            self.metrics.add_source(self, self.collect)
        self.group.start()

    async def stop(self) -> None:
        if self.metrics is not None:
            self.metrics.remove_source(self)
        await self.group.close()

    def collect(self) -> Iterable[Metric]:
        """CoreDNS's forward metrics, under the interkube_ namespace."""
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
        for up in self.upstreams:
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
        broken.add_metric([], self.stats.no_healthy)
        yield broken
        rejects = CounterMetricFamily(f"{ns}_forward_max_concurrent_rejects",
                                      "Counter of the number of queries rejected because the concurrent queries "
                                      "were at maximum.")
        rejects.add_metric([], self.stats.max_concurrent_rejects)
        yield rejects

"""The merge handler: ask every cluster's DNS at once, merge what comes back in time.

Everything per query works on wire bytes (see combine.py): the per-cluster queries are the
client's own bytes with the merged zone swapped for the cluster's, and the answers are read by
interkube.dns.records; dnspython only reads the configuration.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import dns.name
from prometheus_client.core import CounterMetricFamily, Metric

from interkube.dns.message import rcode_name
from interkube.dns.names import ZoneSet
from interkube.dns.wire import FLAG_TC, RCODE_NOERROR, RCODE_NXDOMAIN
from interkube.errors import UpstreamError, UpstreamTimeout
from interkube.pkg.metrics import NAMESPACE
from interkube.pkg.shared import Kind
from interkube.plugin.handler import LATER, SLOW, Handler, passes_later
from interkube.plugin.metrics import Metrics
from interkube.plugin.request import Request
from interkube.plugins.merge.combine import Answer, ClusterReply, cluster_queries, combine, merge_answers
from interkube.plugins.merge.fanout import Plan, launch
from interkube.plugins.merge.parse import ClusterDns, MergeConfig
from interkube.upstream.transport import PendingAnswer
from interkube.upstream.upstream import Upstream, UpstreamGroup

log = logging.getLogger("interkube.plugin.merge")


class MergeStats:
    __slots__ = ("requests", "left_out")

    def __init__(self) -> None:
        self.requests = 0
        #: (cluster, reason) -> answers left out of a merge
        self.left_out: dict[tuple[str, str], int] = {}



MERGE_STATS = Kind('merge statistics', MergeStats)

def _wire(zone: str) -> bytes:
    """``zone`` in uncompressed wire form, its case kept."""
    wire = dns.name.from_text(zone).to_wire()
    assert wire is not None  # None only when writing into a file
    return wire


class _Cluster:
    """One cluster as the hot path needs it: its zone as sent and lower-cased, and its upstream."""

    __slots__ = ("name", "zone", "lzone", "upstream")

    def __init__(self, cfg: ClusterDns, upstream: Upstream) -> None:
        self.name = cfg.name
        self.zone = _wire(cfg.zone)
        self.lzone = self.zone.lower()
        self.upstream = upstream


class _Flight:
    """One cluster's query in flight, as a future rather than a task.

    Over UDP the query is launched on the upstream's datagram exchanger, which hands back the
    answer to come: against asyncio.gather over Upstream.exchange (a task per cluster) this
    saves about a third of a merged query's CPU (bench/merge_fanout.py). TCP and TLS go through
    Upstream.exchange in a task, as does the TCP retry of a truncated UDP answer. The merge
    upstreams' own request counters are not exported (merge has its metrics), so skipping
    Upstream.exchange's bookkeeping loses nothing.
    """

    __slots__ = ("cluster", "wire", "question", "waiter", "pending")

    def __init__(self, cluster: _Cluster, wire: bytes, question: bytes, tcp: bool, timeout: float) -> None:
        self.cluster = cluster
        self.wire = wire
        self.question = question
        self.pending: PendingAnswer | None = None
        up = cluster.upstream
        udp = up.udp
        loop = asyncio.get_running_loop()
        self.waiter: asyncio.Future[bytes]
        if tcp or udp is None:
            self.waiter = loop.create_task(up.exchange(wire, True, timeout))
            return
        try:
            self.pending = udp.launch(wire, timeout, question)
        except UpstreamError as exc:
            self.waiter = loop.create_future()
            self.waiter.set_exception(exc)
            return
        self.waiter = self.pending.answer

    async def reply(self, timeout: float) -> ClusterReply:
        """The cluster's answer read, or why there is none."""
        cluster = self.cluster
        udp = self.pending is not None
        try:
            try:
                resp = await self.waiter
            finally:
                self.abandon()
            if udp and resp[2] & (FLAG_TC >> 8):
                resp = await cluster.upstream.exchange(self.wire, True, timeout)  # the whole answer, over TCP
        except UpstreamTimeout:
            return ClusterReply(cluster.name, cluster.lzone, None, "timeout")
        except UpstreamError as exc:
            return ClusterReply(cluster.name, cluster.lzone, None, f"error: {exc.reason}")
        return ClusterReply.read(cluster.name, cluster.lzone, resp, self.question)

    def abandon(self) -> None:
        """Let go of the query: its answer is in, or will not be awaited (serve() was cancelled)."""
        if self.pending is not None:
            self.pending.release()
            self.pending = None
            return
        waiter = self.waiter
        if not waiter.done():
            waiter.cancel()
        elif not waiter.cancelled():
            waiter.exception()  # retrieved: no "exception was never retrieved" warning


class MergeHandler(Handler):
    plugin = "merge"

    def __init__(self, cfg: MergeConfig, upstreams: UpstreamGroup, stats: MergeStats,
                 metrics: Metrics | None = None) -> None:
        self.cfg = cfg
        #: The merged zone in wire form as configured: what names are moved back into.
        self.zone = _wire(cfg.zone)
        self.zones = ZoneSet((cfg.zone,))
        self.clusters = [_Cluster(c, up) for c, up in zip(cfg.clusters, upstreams.members, strict=True)]
        self.czones = [(c.zone, c.lzone) for c in self.clusters]
        self.zone_len = len(self.zone)
        #: Whether every cluster serves the same zone (as configured): one query for all.
        self.one_zone = len(set(self.czones)) == 1
        #: Each cluster's name, lower-cased zone and upstream, in order (cluster_queries' order).
        self.links = [(c.name, c.lzone, c.upstream) for c in self.clusters]
        self.local_first = cfg.policy == "local-first"
        self.stats = stats
        self.metrics = metrics
        self.group = upstreams
        #: The callback path's plan (fanout.py), when a UDP client's query may go out from the
        #: socket callback: plain UDP upstreams.
        self.plan = (Plan(self.links, cfg.timeout, self._merge_answers)
                     if all(c.upstream.udp is not None and c.upstream.doh is None for c in self.clusters) else None)

    @passes_later
    def fast(self, req: Request) -> bytes | None:
        q = req.query
        if self.zones.match(q.lname) is None:
            return self.next.fast(req)
        # A UDP client's query to UDP upstreams goes out from the socket callback (fanout.py);
        # else the slow path, which needs the network.
        if req.replier is None or not self.later_ok or self.plan is None:
            return SLOW
        self.stats.requests += 1
        launch(req, self.plan, cluster_queries(q, self.zone_len, self.czones, self.one_zone))
        return LATER

    async def serve(self, req: Request) -> bytes:
        q = req.query
        if self.zones.match(q.lname) is None:
            return await self.next.serve(req)
        self.stats.requests += 1
        tcp = req.proto != "udp"
        timeout = self.cfg.timeout
        # Every query leaves before the first answer is awaited; the answers are then awaited
        # in order (one that came already costs nothing to await).
        queries = cluster_queries(q, len(self.zone), self.czones)
        flights = [_Flight(c, wire, question, tcp, timeout)
                   for c, (wire, question) in zip(self.clusters, queries, strict=True)]
        replies = []
        try:
            for flight in flights:
                replies.append(await flight.reply(timeout))
        except BaseException:
            for flight in flights:
                flight.abandon()
            raise
        return self._merged(req, replies)

    def _merged(self, req: Request, replies: list[ClusterReply]) -> bytes:
        """The merged answer from every cluster's reply (in the clusters' order), counted."""
        self._count_left_out(replies)
        req.answered_by = self.plugin
        return combine(req.query, replies, self.zone, self.cfg.local, self.local_first)

    def _merge_answers(self, req: Request, answers: list[Answer], queries: list[tuple[bytes, bytes]]) -> bytes:
        """The callback path's _merged(): every cluster's answer as it came (see fanout.py)."""
        resp, replies = merge_answers(req.query, answers, queries, self.links, self.zone, self.cfg.local,
                                      self.local_first)
        if replies is not None:
            self._count_left_out(replies)
        req.answered_by = self.plugin
        return resp

    def _count_left_out(self, replies: list[ClusterReply]) -> None:
        for reply in replies:
            if reply.rcode != RCODE_NOERROR and reply.rcode != RCODE_NXDOMAIN:  # (reply.counts, inline)
                if reply.failure:
                    reason = reply.failure
                else:
                    reason = "rcode " + rcode_name(reply.rcode)  # a reply that did not fail was read
                key = (reply.cluster, reason.split(":", 1)[0])
                self.stats.left_out[key] = self.stats.left_out.get(key, 0) + 1

    async def start(self) -> None:
        if self.metrics is not None:
            self.metrics.add_source(self, self.collect)
        self.group.start()

    async def stop(self) -> None:
        if self.metrics is not None:
            self.metrics.remove_source(self)
        await self.group.close()

    def collect(self) -> Iterable[Metric]:
        requests = CounterMetricFamily(f"{NAMESPACE}_merge_requests", "Queries answered by merging clusters.",
                                       labels=["zone"])
        requests.add_metric([self.cfg.zone], self.stats.requests)
        yield requests
        left = CounterMetricFamily(f"{NAMESPACE}_merge_cluster_left_out",
                                   "Cluster answers left out of a merge, by cluster and reason.",
                                   labels=["zone", "cluster", "reason"])
        for (cluster, reason), n in self.stats.left_out.items():
            left.add_metric([self.cfg.zone, cluster, reason], n)
        yield left

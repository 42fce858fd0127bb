"""The merge handler: ask every cluster's DNS at once, merge what comes back in time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rrset
from prometheus_client.core import CounterMetricFamily, Metric

from interkube.dns.message import render
from interkube.dns.names import ZoneSet
from interkube.errors import UpstreamError, UpstreamTimeout
from interkube.plugins.merge.combine import ClusterReply, combine, to_zone
from interkube.plugins.merge.parse import ClusterDns, MergeConfig
from interkube.server.metrics import NAMESPACE, Metrics
from interkube.server.plugin import Handler
from interkube.server.request import Request
from interkube.upstream.upstream import Upstream

log = logging.getLogger("interkube.plugin.merge")


class MergeStats:
    __slots__ = ("requests", "left_out")

    def __init__(self) -> None:
        self.requests = 0
        #: (cluster, reason) -> answers left out of a merge
        self.left_out: dict[tuple[str, str], int] = {}


class MergeHandler(Handler):
    plugin = "merge"

    def __init__(self, cfg: MergeConfig, upstreams: list[Upstream], stats: MergeStats,
                 metrics: Metrics | None = None) -> None:
        self.cfg = cfg
        self.zone = dns.name.from_text(cfg.zone)
        self.zones = ZoneSet((cfg.zone,))
        self.clusters: list[tuple[ClusterDns, dns.name.Name, Upstream]] = [
            (c, dns.name.from_text(c.zone), up) for c, up in zip(cfg.clusters, upstreams)]
        self.stats = stats
        self.metrics = metrics

    def fast(self, req: Request) -> bytes | None:
        if self.zones.match(req.query.lname) is not None:  # type: ignore[union-attr]
            return None  # needs the network
        return self.next.fast(req)

    async def serve(self, req: Request) -> bytes:
        if self.zones.match(req.query.lname) is None:  # type: ignore[union-attr]
            return await self.next.serve(req)
        self.stats.requests += 1
        query = req.message
        tcp = req.proto != "udp"
        replies = await asyncio.gather(*(self._ask(query, cluster, czone, up, tcp)
                                         for cluster, czone, up in self.clusters))
        for reply in replies:
            if not reply.counts:
                reason = reply.failure or "rcode " + dns.rcode.to_text(reply.response.rcode())  # type: ignore[union-attr]
                key = (reply.cluster, reason.split(":", 1)[0])
                self.stats.left_out[key] = self.stats.left_out.get(key, 0) + 1
        merged = combine(query, list(replies), self.zone, self.cfg.local, self.cfg.policy == "local-first")
        req.answered_by = self.plugin
        return render(merged)

    async def _ask(self, query: dns.message.Message, cluster: ClusterDns, czone: dns.name.Name,
                   up: Upstream, tcp: bool) -> ClusterReply:
        q = query.question[0]
        asked = dns.message.Message()
        asked.flags = query.flags
        asked.question = [dns.rrset.RRset(to_zone(q.name, self.zone, czone), q.rdclass, q.rdtype)]
        if query.edns >= 0:
            asked.use_edns(0, query.ednsflags, query.payload)
        try:
            wire = await up.exchange(asked.to_wire(), tcp, self.cfg.timeout)
        except UpstreamTimeout:
            return ClusterReply(cluster.name, czone, None, "timeout")
        except UpstreamError as exc:
            return ClusterReply(cluster.name, czone, None, f"error: {exc.reason}")
        try:
            return ClusterReply(cluster.name, czone, dns.message.from_wire(wire))
        except dns.exception.DNSException as exc:
            return ClusterReply(cluster.name, czone, None, f"malformed: {exc}")

    async def start(self) -> None:
        if self.metrics is not None:
            self.metrics.add_source(self, self.collect)

    async def stop(self) -> None:
        if self.metrics is not None:
            self.metrics.remove_source(self)
        for _, _, up in self.clusters:
            up.close()

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




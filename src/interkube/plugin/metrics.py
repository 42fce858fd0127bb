"""The process's metrics: a prometheus_client registry fed from plain counters at scrape time.

A ``Counter.labels(...).inc()`` costs about a microsecond, a fifth of the time the fast path has
for a whole query, so plugins do not call prometheus_client per query. They count in plain dicts
and ints, and register a *source*: a function that turns those counts into metric families when
``/metrics`` is scraped. prometheus_client still does the exposition format, the registry and the
process/platform collectors.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from interkube import __version__
from interkube.pkg.metrics import NAMESPACE, Source

# `*_created` series double every counter for no use to DNS dashboards (CoreDNS has none).
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client does not annotate it


class _SourcesCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        for source in list(self.metrics.sources.values()):
            for family in source():
                # Two sources may report the same family (two cache stanzas): merge the samples.
                seen = families.get(family.name)
                if seen is None:
                    families[family.name] = family
                else:
                    seen.samples.extend(family.samples)
        return families.values()


class MalformedQueries:
    """Queries answered FORMERR at admission because they are malformed, by server and reason.

    The dispatcher counts in a plain dict (no prometheus_client call per query: a flood of bad
    packets must stay cheap) and every scrape exports the counts as
    ``interkube_dns_malformed_queries_total{server, reason}``. One per process, as CoreDNS's
    package-level metrics: a reload builds new dispatchers, the counts go on.
    """

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    def count(self, server: str, reason: str) -> None:
        key = (server, reason)
        self.counts[key] = self.counts.get(key, 0) + 1

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(f"{NAMESPACE}_dns_malformed_queries",
                                     "Counter of queries answered FORMERR because they are malformed, "
                                     "by reason (message, opt, option, ecs).", labels=["server", "reason"])
        for (server, reason), n in list(self.counts.items()):
            family.add_metric([server, reason], n)
        yield family


MALFORMED_QUERIES = MalformedQueries()


class UdpBacklogDrops:
    """Queries a UDP listener dropped unanswered, oldest first, because more waited for the slow
    path (an upstream, a cluster not in memory) than its backlog holds: a flood it sheds rather
    than letting it delay the answers from memory. Counted per server in a plain dict, exported
    as ``interkube_dns_udp_backlog_dropped_total{server}``; one per process, as MALFORMED_QUERIES."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def count(self, server: str, n: int = 1) -> None:
        self.counts[server] = self.counts.get(server, 0) + n

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(f"{NAMESPACE}_dns_udp_backlog_dropped",
                                     "Counter of UDP queries dropped, oldest first, because the listener's "
                                     "backlog of queries waiting for the slow path was full.", labels=["server"])
        for server, n in list(self.counts.items()):
            family.add_metric([server], n)
        yield family


UDP_BACKLOG_DROPS = UdpBacklogDrops()


class Metrics:
    """One per process; kept across reloads so counters do not reset."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.sources: dict[Any, Source] = {}
        self.registry.register(_SourcesCollector(self))
        self.build_info = Gauge(f"{NAMESPACE}_build_info", "A metric with a constant '1' value labeled by "
                                "version, revision, and python version from which interkube was built.",
                                ["version", "revision", "pythonversion"], registry=self.registry)
        self.build_info.labels(__version__, "", platform.python_version()).set(1)
        self.reload_failed = Counter(f"{NAMESPACE}_reload_failed_total",
                                     "Counter of the number of failed reload attempts.", registry=self.registry)
        self.reloads = Counter(f"{NAMESPACE}_reload_total", "Counter of successful reloads.",
                               registry=self.registry)
        self.add_source(MALFORMED_QUERIES, MALFORMED_QUERIES.collect)
        self.add_source(UDP_BACKLOG_DROPS, UDP_BACKLOG_DROPS.collect)

    def add_source(self, owner: Any, source: Source) -> None:
        """Publish ``source()``'s families at every scrape until ``remove_source(owner)``."""
        self.sources[owner] = source

    def remove_source(self, owner: Any) -> None:
        self.sources.pop(owner, None)

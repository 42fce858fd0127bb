"""The process's metrics: a prometheus_client registry fed from plain counters at scrape time.

A ``Counter.labels(...).inc()`` costs about a microsecond, a fifth of the time the fast path has
for a whole query, so plugins do not call prometheus_client per query. They count in plain dicts
and ints, and register a *source*: a function that turns those counts into metric families when
``/metrics`` is scraped. prometheus_client still does the exposition format, the registry and the
process/platform collectors.

prometheus_client (with the http.server, urllib and wsgiref modules it loads: 2 MiB of a small
server's RSS) is imported when the registry is first asked for -- by the prometheus plugin, a
multi-worker server's metrics socket, or a reload's counters -- not by a server nobody scrapes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from interkube.pkg.metrics import NAMESPACE, Source

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge
    from prometheus_client.core import Metric


def _no_created_series() -> None:
    """`*_created` series double every counter for no use to DNS dashboards (CoreDNS has none):
    off in every process that loads this module, prometheus_client loaded already or later (its
    own variable, read at its import; child processes inherit it, to the same effect)."""
    if "prometheus_client" in sys.modules:
        from prometheus_client import disable_created_metrics

        disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client does not annotate it
    else:
        os.environ["PROMETHEUS_DISABLE_CREATED_SERIES"] = "True"


_no_created_series()


class _SourcesCollector:
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
        from prometheus_client.core import CounterMetricFamily

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
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily(f"{NAMESPACE}_dns_udp_backlog_dropped",
                                     "Counter of UDP queries dropped, oldest first, because the listener's "
                                     "backlog of queries waiting for the slow path was full.", labels=["server"])
        for server, n in list(self.counts.items()):
            family.add_metric([server], n)
        yield family


UDP_BACKLOG_DROPS = UdpBacklogDrops()


class _Registry:
    """The prometheus_client side of a Metrics: its registry and the process's own series."""

    def __init__(self, metrics: Metrics) -> None:
        import platform  # (its regular expressions, compiled at import: a few ms of a start that needs none)

        from prometheus_client import CollectorRegistry, Counter, Gauge

        from interkube import __version__  # (read from the package's metadata: only when the series is made)

        _no_created_series()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_SourcesCollector(metrics))
        self.build_info = Gauge(f"{NAMESPACE}_build_info", "A metric with a constant '1' value labeled by "
                                "version, revision, and python version from which interkube was built.",
                                ["version", "revision", "pythonversion"], registry=self.registry)
        self.build_info.labels(__version__, "", platform.python_version()).set(1)
        self.reload_failed = Counter(f"{NAMESPACE}_reload_failed_total",
                                     "Counter of the number of failed reload attempts.", registry=self.registry)
        self.reloads = Counter(f"{NAMESPACE}_reload_total", "Counter of successful reloads.",
                               registry=self.registry)


class Metrics:
    """One per process; kept across reloads so counters do not reset.

    The prometheus_client objects are made at the first use of any of them (see the module's
    docstring); the sources are plain functions until a scrape calls them.
    """

    def __init__(self) -> None:
        self.sources: dict[Any, Source] = {}
        self._prometheus: _Registry | None = None
        self.add_source(MALFORMED_QUERIES, MALFORMED_QUERIES.collect)
        self.add_source(UDP_BACKLOG_DROPS, UDP_BACKLOG_DROPS.collect)

    def _made(self) -> _Registry:
        if self._prometheus is None:
            self._prometheus = _Registry(self)
        return self._prometheus

    @property
    def registry(self) -> CollectorRegistry:
        return self._made().registry

    @property
    def build_info(self) -> Gauge:
        return self._made().build_info

    @property
    def reload_failed(self) -> Counter:
        return self._made().reload_failed

    @property
    def reloads(self) -> Counter:
        return self._made().reloads

    def add_source(self, owner: Any, source: Source) -> None:
        """Publish ``source()``'s families at every scrape until ``remove_source(owner)``."""
        self.sources[owner] = source

    def remove_source(self, owner: Any) -> None:
        self.sources.pop(owner, None)

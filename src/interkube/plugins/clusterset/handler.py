"""The clusterset handler: merged answers from the clusters' data, served as pre-encoded templates.

Answers are built once per question with :class:`~interkube.kube.merge.Merge` and kept as templates, as the
kubernetes handler keeps its own. What an answer depends on has two parts:

* *which clusters answer*: a cluster is left out while it has no data (never synced) or its
  source is failing (``cluster.down``). The *signature* says, per cluster, its index or the
  reason it is left out. It is computed again only when something it reads may have changed
  (a cluster went down or came back, swapped its index, or the registry published another
  cluster under a name), so a query pays one flag test for it. A new signature starts a new
  generation of templates;
* *what the answering clusters hold*: each template keeps the dependency keys of the lookups
  that built it, prefixed with the cluster's name, and a watch event in one cluster drops
  exactly the templates that read what it changed.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable

import dns.name
import dns.rcode
import dns.rdataclass
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from interkube.dns.message import make_response, render
from interkube.dns.names import ZoneSet
from interkube.dns.wire import ZONE_TRANSFERS
from interkube.kube.cluster import Cluster, Listener
from interkube.kube.dnsrecords import respond
from interkube.kube.index import ClusterIndex, DepKey
from interkube.kube.merge import Merge, Options, Source
from interkube.kube.registry import ClusterRegistry
from interkube.pkg.metrics import NAMESPACE
from interkube.pkg.shared import Kind
from interkube.plugin.answers import PASS, REFUSED, SERVFAIL, DependentGeneration, Entry, TemplateHandler
from interkube.plugin.metrics import Metrics
from interkube.plugin.request import Request
from interkube.plugins.clusterset.parse import ClustersetConfig

log = logging.getLogger("interkube.plugin.clusterset")

#: Why a cluster is left out (the `reason` label).
UNSYNCED = "unsynced"
UNREACHABLE = "unreachable"

Signature = tuple[ClusterIndex | str, ...]


class ClustersetStats:
    """Counters of one clusterset zone, kept across reloads."""

    __slots__ = ("requests", "left_out")

    def __init__(self) -> None:
        self.requests: dict[str, int] = {}
        #: (zone, cluster, reason) -> queries answered without that cluster
        self.left_out: dict[tuple[str, str, str], int] = {}


CLUSTERSET_STATS = Kind("clusterset statistics", ClustersetStats)


class ClustersetHandler(TemplateHandler):
    plugin = "clusterset"

    def __init__(self, cfg: ClustersetConfig, zones: tuple[str, ...], clusters: tuple[str, ...],
                 registry: ClusterRegistry, stats: ClustersetStats, metrics: Metrics | None = None) -> None:
        self.zones = ZoneSet(zones)
        self.cfg = cfg
        #: The configured clusters, in the configured order (for names and metrics) ...
        self.clusters = clusters
        #: ... and in the order answers prefer them: the local cluster first.
        self.order = tuple(sorted(clusters, key=lambda name: name != cfg.local))
        self.options = Options(ttl=cfg.ttl, local=cfg.local, local_first=cfg.policy == "local-first",
                               remote_clusterip=cfg.remote == "clusterip", mcs=cfg.mcs)
        self.registry = registry
        self.stats = stats
        for zone in self.zones.zones:
            stats.requests.setdefault(dns.name.from_text(zone).to_text().lower(), 0)
        self.metrics = metrics
        self.generation: DependentGeneration[Signature] = DependentGeneration(())
        #: The cluster object each name's listener is subscribed to (a reload may publish another).
        self._watched: list[Cluster | None] = [None] * len(self.order)
        self._listeners = [self._listener(name) for name in self.order]
        #: (cluster, reason) of the clusters the current generation leaves out.
        self._left: list[tuple[str, str]] = []
        #: Whether the signature must be computed again before the next answer, and the
        #: registry version it was computed at.
        self._stale = True
        self._registry_version = -1
        #: Answers built since start (the other queries were served from templates).
        self.built = 0

    # --- which clusters answer -------------------------------------------------------------

    def signature(self) -> Signature:
        """Per cluster (in preference order) its index while it answers, else why it does not."""
        get = self.registry.get
        out: list[ClusterIndex | str] = []
        for i, name in enumerate(self.order):
            cluster = get(name)
            if cluster is None:
                out.append(UNSYNCED)  # its stanza has not started yet
                continue
            if cluster is not self._watched[i]:
                self._watch(i, cluster)
            index = cluster.index
            if index is None:
                out.append(UNSYNCED)
            elif cluster.down is not None:
                out.append(UNREACHABLE)
            else:
                out.append(index)
        return tuple(out)

    def _watch(self, i: int, cluster: Cluster | None) -> None:
        old = self._watched[i]
        if old is not None:
            old.unsubscribe(self._listeners[i])
            old.unsubscribe_state(self._state_changed)
        if cluster is not None:
            cluster.subscribe(self._listeners[i])
            cluster.subscribe_state(self._state_changed)
        self._watched[i] = cluster

    def _state_changed(self) -> None:
        self._stale = True

    def _listener(self, name: str) -> Listener:
        def changed(index: ClusterIndex, keys: set[DepKey] | None) -> None:
            if keys is None:
                self._stale = True  # a new index: the next query's signature holds it
                return
            gen = self.generation
            if index in gen.data:  # else no current answer was built from it
                gen.templates.invalidate([(name, *key) for key in keys])
        return changed

    # --- answering -------------------------------------------------------------------------

    def template(self, req: Request) -> Entry:
        q = req.query
        zone = self.zones.match(q.lname)
        if zone is None:
            return PASS
        if q.qtype in ZONE_TRANSFERS:
            return REFUSED  # a merged view is no zone to copy
        gen = self.generation
        sig = gen.data
        if self._stale or self.registry.version != self._registry_version:
            self._stale, self._registry_version = False, self.registry.version
            sig = self.signature()
        if gen.data != sig:
            gen = self.generation = DependentGeneration(sig)
            self._left = [(name, state) for name, state in zip(self.order, sig, strict=True) if isinstance(state, str)]
            for name, reason in self._left:
                log.debug("%s: cluster %s is left out (%s)", zone, name, reason)
        tpl: Entry | None
        if len(self._left) == len(self.order):
            if self.cfg.fallthrough.applies(q.lname):
                return PASS
            tpl = SERVFAIL
        else:
            tpl = gen.templates.get(q.key)
            if tpl is None:
                tpl = gen.build(q, lambda deps: self._build(req, sig, deps, zone))
                self.built += 1
            if tpl is PASS:
                return PASS
        self._count(zone)
        return tpl

    def _count(self, zone: str) -> None:
        self.stats.requests[zone] += 1
        if self._left:
            left_out = self.stats.left_out
            for name, reason in self._left:
                key = (zone, name, reason)
                left_out[key] = left_out.get(key, 0) + 1

    def _build(self, req: Request, sig: Signature, deps: set[Hashable], zone: str) -> bytes | None:
        """The response bytes, or None to pass the question to the next plugin."""
        q = req.query
        if q.qclass != dns.rdataclass.IN:
            return None
        views: list[tuple[str, set[DepKey]]] = []
        sources = []
        for name, state in zip(self.order, sig, strict=True):
            if isinstance(state, ClusterIndex):
                seen: set[DepKey] = set()
                views.append((name, seen))
                sources.append(Source(name, state.view(seen)))
        merge = Merge(sources, self.clusters, zone, self.options)
        outcome = merge.answer(req.qname, q.qtype)
        for name, seen in views:
            deps.update((name, *key) for key in seen)
        if outcome is None:
            response = make_response(req.message, authoritative=False)
            response.set_rcode(dns.rcode.SERVFAIL)
            return render(response)
        if outcome.name_error and self.cfg.fallthrough.applies(q.lname):
            return None
        return respond(req.message, outcome, merge.soa(merge.zone_name), q)

    # --- lifecycle, readiness, metrics -----------------------------------------------------

    async def start(self) -> None:
        if self.metrics is not None:
            self.metrics.add_source(self, self.collect)

    async def stop(self) -> None:
        if self.metrics is not None:
            self.metrics.remove_source(self)
        for i in range(len(self.order)):
            self._watch(i, None)
        self._stale = True

    def readiness(self) -> dict[str, bool]:
        # Ready once any one cluster answers: one cluster's failure must not hold the others
        # back (each kubernetes stanza reports its own cluster's first sync).
        return {f"clusterset:{self.zones.zones[0].rstrip('.')}":
                any(isinstance(state, ClusterIndex) for state in self.signature())}

    def collect(self) -> Iterable[Metric]:
        p = f"{NAMESPACE}_clusterset_"
        requests = CounterMetricFamily(p + "requests", "Queries answered from the clusterset.", labels=["zone"])
        for zone, n in sorted(self.stats.requests.items()):
            requests.add_metric([zone], n)
        left = CounterMetricFamily(p + "cluster_left_out", "Queries answered without a cluster that was "
                                   "unsynced or unreachable, by cluster and reason.",
                                   labels=["zone", "cluster", "reason"])
        for key, n in sorted(self.stats.left_out.items()):
            left.add_metric(list(key), n)
        answering = GaugeMetricFamily(p + "cluster_answering", "1 while the cluster's data answers for the "
                                      "clusterset, 0 while it is left out.", labels=["zone", "cluster"])
        states = dict(zip(self.order, self.signature(), strict=True))
        for zone in self.zones.zones:
            for name in self.clusters:
                answering.add_metric([zone, name], 1.0 if isinstance(states[name], ClusterIndex) else 0.0)
        yield from (requests, left, answering)

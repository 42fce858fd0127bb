"""The process-wide registry of clusters: who feeds which cluster, and lookup by name.

Every ``kubernetes`` stanza serves one cluster under a name (its ``cluster NAME`` option, else
its kubeconfig context, else ``NAME`` of a first zone ``cluster.NAME``, else the first zone).
Plugins that work across clusters (the ``clusterset`` merge) read those clusters through this
registry rather than through the kubernetes handlers. The API for them::

    from interkube.kube.registry import cluster_registry

    registry = cluster_registry(ctx.services.shared, ctx.services.metrics)  # in setup; one per process
    cluster = registry.get("east")                 # at query time: Cluster | None
    registry.names()                               # names being served now, sorted

    cluster.synced                  # bool: had a first full sync (data may be old since)
    cluster.sync_age()              # float seconds since the data was known current, or None
    cluster.down                    # str reason while its API is unreachable, else None
    cluster.index                   # ClusterIndex | None (None until the first sync)
    index = cluster.index
    index.service(ns, name)         # Service | None (ports, cluster_ips, headless, ...)
    index.slices(ns, name)          # EndpointSlices of the Service (endpoints: ip, hostname,
                                    #   target pod, ready); honour Service.publish_not_ready
    index.namespace_exists(ns)      # True when the namespace holds Services (or kept Pods)
    index.service_export(ns, name)  # ServiceExport | None  (multicluster.x-k8s.io)
    index.service_import(ns, name)  # ServiceImport | None  (type, ips, ports, clusters)
    index.services_external_at(ip)  # Services with ip among their external_ips (k8s_external)
    index.serial                    # SOA serial: when this index was built
    index.view(deps)                # the same reads, adding each lookup's key to the set deps

    cluster.subscribe(listener)     # listener(index, keys | None) after every change: keys is
    cluster.unsubscribe(listener)   #   the set of dependency keys changed (see kube.index),
                                    #   None when the whole index was replaced
    cluster.subscribe_state(f)      # f() when cluster.down turns on or off
    registry.version                # changes whenever get() may answer differently

A reader must look ``cluster.index`` up again per query (a relist swaps in a new object), and
may cache answers as the kubernetes handler does: build through ``index.view(deps)``, keep
``deps`` with the answer, drop the answers whose deps meet the keys a listener receives, and
drop everything when the listener gets None or ``cluster.index`` is another object.

Lifecycle (used by the kubernetes handlers): setup finds a running cluster with the same name
and source (:meth:`ClusterRegistry.running`) so that a reload, or the same cluster served in
two server blocks, shares one watch; ``attach`` in the handler's start() starts the source,
``publish`` makes the cluster the one :meth:`get` returns, and ``detach`` in stop() ends the
source once no handler uses it. Two stanzas of one configuration may not give one name to two
different sources.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING

from interkube.errors import KubeError
from interkube.kube.cluster import Cluster, ClusterStats
from interkube.pkg.metrics import NAMESPACE, MetricSources
from interkube.pkg.shared import Kind, SharedObjects

if TYPE_CHECKING:  # prometheus_client loads at the first scrape (see interkube.plugin.metrics)
    from prometheus_client.core import Metric


class ClusterRegistry:
    """Clusters by name, shared by every server block and kept across reloads."""

    def __init__(self) -> None:
        self._published: dict[str, Cluster] = {}
        self._running: dict[tuple[str, Hashable], Cluster] = {}
        #: cluster -> {owner: configuration token}; a cluster runs while it has owners.
        self._owners: dict[Cluster, dict[object, object]] = {}
        self._stats: dict[str, ClusterStats] = {}
        #: Bumped whenever :meth:`get` may answer differently: a reader that resolved names
        #: once resolves them again when it sees another version.
        self.version = 0

    # --- for readers -----------------------------------------------------------------------

    def get(self, name: str) -> Cluster | None:
        """The cluster served under ``name`` now, or None."""
        return self._published.get(name)

    def names(self) -> list[str]:
        return sorted(self._published)

    # --- for the kubernetes handlers -------------------------------------------------------

    def stats(self, name: str) -> ClusterStats:
        """The counters of ``name`` (one object per name for the life of the process)."""
        return self._stats.setdefault(name, ClusterStats())

    def running(self, name: str, key: Hashable) -> Cluster | None:
        """A started cluster with this name and source, to share instead of starting another."""
        return self._running.get((name, key))

    async def attach(self, cluster: Cluster, owner: object, configuration: object) -> Cluster:
        """Start ``cluster`` for ``owner`` (or join an equal one already running); returns the
        cluster the owner is to use.

        ``configuration`` identifies the configuration the owner belongs to: two owners of one
        configuration may not run two different sources under one name.
        """
        key = (cluster.name, cluster.source.key)
        shared = self._running.get(key)
        if shared is not None:
            cluster = shared
        else:
            for other, owners in self._owners.items():
                if other.name == cluster.name and configuration in owners.values():
                    raise KubeError(f"two kubernetes stanzas serve the cluster name {cluster.name!r} from "
                                    f"different sources ({other.source.description} and "
                                    f"{cluster.source.description}); give one a `cluster NAME` of its own",
                                    cluster=cluster.name)
            self._running[key] = cluster
        self._owners.setdefault(cluster, {})[owner] = configuration
        try:
            await cluster.start()
        except BaseException:
            await self.detach(cluster, owner)
            raise
        return cluster

    def publish(self, cluster: Cluster) -> None:
        """Make ``cluster`` the one :meth:`get` returns for its name."""
        self._published[cluster.name] = cluster
        self.version += 1

    async def detach(self, cluster: Cluster, owner: object) -> None:
        """``owner`` no longer uses ``cluster``; the last one out stops it."""
        owners = self._owners.get(cluster)
        if owners is None:
            return
        owners.pop(owner, None)
        if owners:
            return
        del self._owners[cluster]
        if self._running.get((cluster.name, cluster.source.key)) is cluster:
            del self._running[(cluster.name, cluster.source.key)]
        if self._published.get(cluster.name) is cluster:
            del self._published[cluster.name]
            self.version += 1
            # Another cluster of that name may still be serving (the configuration a failed
            # reload was to replace): it is the one to find by name again.
            for other in self._owners:
                if other.name == cluster.name:
                    self._published[cluster.name] = other
        await cluster.stop()

    # --- metrics ---------------------------------------------------------------------------

    def collect(self) -> Iterable[Metric]:
        """The kubernetes plugin's metrics, published at scrape time."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        p = f"{NAMESPACE}_kubernetes_"
        age = GaugeMetricFamily(p + "sync_age_seconds", "Seconds since the cluster's data was last known to "
                                "be current (a list, a watch event or a bookmark).", labels=["cluster"])
        synced = GaugeMetricFamily(p + "synced", "1 once the cluster has had a first full sync.",
                                   labels=["cluster"])
        restarts = CounterMetricFamily(p + "watch_restarts", "Watches started again after they ended, "
                                       "failed or went silent.", labels=["cluster", "resource"])
        skipped = CounterMetricFamily(p + "objects_skipped", "Malformed objects left out of the data.",
                                      labels=["cluster", "resource"])
        relists = CounterMetricFamily(p + "relists", "Full lists after the first (410 Gone, a lost API, "
                                      "a changed snapshot).", labels=["cluster"])
        refused = CounterMetricFamily(p + "snapshot_reloads_refused", "Changed snapshots not taken (the "
                                      "previous data kept): invalid, incomplete, empty, drop.",
                                      labels=["cluster", "reason"])
        for name, cluster in sorted(self._published.items()):
            synced.add_metric([name], 1.0 if cluster.synced else 0.0)
            sync_age = cluster.sync_age()
            if sync_age is not None:
                age.add_metric([name], sync_age)
        for name, stats in sorted(self._stats.items()):
            for resource, n in sorted(stats.restarts.items()):
                restarts.add_metric([name, resource], n)
            for resource, n in sorted(stats.skipped.items()):
                skipped.add_metric([name, resource], n)
            relists.add_metric([name], stats.relists)
            for reason, n in sorted(stats.refused.items()):
                refused.add_metric([name, reason], n)
        yield from (age, synced, restarts, skipped, relists, refused)


#: What a cluster may be called: what a metric label, a readiness line and an MCS cluster ID can
#: all carry (letters, digits, '-', '_' and '.').
CLUSTER_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")

CLUSTER_REGISTRY = Kind("cluster registry", ClusterRegistry)


def cluster_registry(shared: SharedObjects, metrics: MetricSources) -> ClusterRegistry:
    """The process's registry (created, with its metrics source, on first use)."""
    def create() -> ClusterRegistry:
        registry = ClusterRegistry()
        metrics.add_source(CLUSTER_REGISTRY, registry.collect)
        return registry

    return shared.get_or_create(CLUSTER_REGISTRY, None, create)

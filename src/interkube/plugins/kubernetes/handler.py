"""The kubernetes handler: one stanza, one cluster, answers from pre-encoded templates.

Answers are built once per question shape with dnspython (see :mod:`.lookup`) and served as
templates after that. Each template remembers the index lookups it was built from; when a
watch event changes an object, the cluster reports the dependency keys it touched and exactly
those templates are dropped (the next query builds them again from the new data). A relist
replaces the index, and with it the whole generation of templates.

Until its cluster first syncs, the stanza answers SERVFAIL for its zones (names a
``fallthrough`` covers go on to the next plugin, as CoreDNS does for names it cannot find).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable

import dns.rdataclass

from interkube.dns.names import ZoneSet
from interkube.dns.wire import ZONE_TRANSFERS
from interkube.kube.cluster import Cluster
from interkube.kube.dnsrecords import respond
from interkube.kube.index import ClusterIndex, DepKey
from interkube.kube.registry import ClusterRegistry
from interkube.plugin.answers import PASS, REFUSED, SERVFAIL, DependentGeneration, Entry, TemplateHandler
from interkube.plugin.request import Request
from interkube.plugins.kubernetes.lookup import Lookup, Options
from interkube.plugins.kubernetes.parse import KubernetesConfig

log = logging.getLogger("interkube.plugin.kubernetes")


#: Stands in for a template while the cluster has no data.
UNSYNCED = SERVFAIL


class StanzaGroup:
    """The kubernetes handlers of one server block, whose clusters start together."""

    def __init__(self, handlers: list[KubernetesHandler] | None = None) -> None:
        self.handlers: list[KubernetesHandler] = handlers if handlers is not None else []


class KubernetesHandler(TemplateHandler):
    plugin = "kubernetes"

    def __init__(self, cfg: KubernetesConfig, zones: tuple[str, ...], options: Options, cluster: Cluster,
                 registry: ClusterRegistry, configuration: object,
                 group: StanzaGroup | None = None) -> None:
        self.zones = ZoneSet(zones)
        self.cfg = cfg
        self.options = options
        self.cluster = cluster
        self.registry = registry
        #: Identifies the configuration this handler belongs to (see ClusterRegistry.attach).
        self.configuration = configuration
        #: The kubernetes handlers of the same server block, whose clusters start together.
        self.group = group if group is not None else StanzaGroup([self])
        self.generation: DependentGeneration[ClusterIndex | None] = DependentGeneration(cluster.index)
        self.attached = False
        #: Answers built since start (the rest of the queries were served from templates).
        self.built = 0

    # --- answering -------------------------------------------------------------------------

    def template(self, req: Request) -> Entry:
        q = req.query
        zone = self.zones.match(q.lname)
        if zone is None:
            return PASS
        if q.qtype in ZONE_TRANSFERS:
            return REFUSED
        index = self.cluster.index
        if index is None:
            return PASS if self.cfg.fallthrough.applies(q.lname) else UNSYNCED
        gen = self.generation
        if gen.data is not index:
            gen = self.generation = DependentGeneration(index)
        tpl = gen.templates.get(q.key)
        if tpl is None:
            tpl = gen.build(q, lambda deps: self._build(req, index, deps, zone))
            self.built += 1
        return tpl

    def _build(self, req: Request, index: ClusterIndex, deps: set[Hashable], zone: str) -> bytes | None:
        """The response bytes, or None to pass the question to the next plugin."""
        q = req.query
        if q.qclass != dns.rdataclass.IN:
            return None
        lookup = Lookup(index.view(deps), zone, self.options)
        outcome = lookup.answer(req.qname, q.qtype)
        if outcome.name_error and self.cfg.fallthrough.applies(q.lname):
            return None
        return respond(req.message, outcome, lookup.soa(lookup.zone_name))

    def _changed(self, index: ClusterIndex, keys: set[DepKey] | None) -> None:
        """The cluster's data changed: drop the answers that looked at what changed."""
        gen = self.generation
        if gen.data is not index:
            return  # templates of an older index; replaced at the next query
        if keys is None:
            self.generation = DependentGeneration(index)
        else:
            gen.templates.invalidate(keys)

    # --- lifecycle -------------------------------------------------------------------------

    async def attach(self) -> None:
        """Start this stanza's cluster (or join the same one already running)."""
        if self.attached:
            return
        cluster = await self.registry.attach(self.cluster, self, self.configuration)
        self.attached = True
        if cluster is not self.cluster:
            self.cluster = cluster
            self.generation = DependentGeneration(cluster.index)
        cluster.subscribe(self._changed)

    async def detach(self) -> None:
        if self.attached:
            self.attached = False
            self.cluster.unsubscribe(self._changed)
            await self.registry.detach(self.cluster, self)

    async def start(self) -> None:
        # The clusters of one server block start together, so that their first syncs overlap
        # instead of each waiting out the last one's startup_timeout.
        started = []
        try:
            for handler in self.group.handlers:
                if not handler.attached:
                    await handler.attach()
                    started.append(handler)
        except BaseException:
            for handler in started:
                await handler.detach()
            raise
        cluster = self.cluster
        if not await cluster.wait_synced(self.cfg.startup_timeout):
            log.warning("cluster %s: no first sync within %gs (startup_timeout); serving anyway, its "
                        "zones answer SERVFAIL until it syncs", cluster.name, self.cfg.startup_timeout)
        self.registry.publish(cluster)

    async def stop(self) -> None:
        await self.detach()

    def readiness(self) -> dict[str, bool]:
        return {f"kubernetes:{self.cluster.name}": self.cluster.synced}


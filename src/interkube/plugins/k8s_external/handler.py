"""The k8s_external handler: external names of the cluster of the block's kubernetes stanza,
answered from pre-encoded templates.

The data is the stanza's cluster (the first kubernetes or kubernetai stanza of the server block,
as CoreDNS's plugin uses the block's kubernetes plugin); each answer keeps the index lookups it
was built from, and a watch event drops exactly the answers that read what it changed (as the
kubernetes handler's own). The stanza's cluster object is looked at per query: the stanza may
join a cluster already running when it starts, and a reload brings another.
"""

from __future__ import annotations

from collections.abc import Hashable

import dns.rdataclass

from interkube.dns.names import ZoneSet
from interkube.kube.dnsrecords import respond
from interkube.kube.index import ClusterIndex
from interkube.plugin.answers import PASS, SERVFAIL, DependentGeneration, Entry, TemplateHandler
from interkube.plugin.followed import FollowedCluster
from interkube.plugin.kubestanza import KubernetesHandler, StanzaGroup
from interkube.plugin.request import Request
from interkube.plugins.k8s_external.lookup import ExternalLookup, Options
from interkube.plugins.k8s_external.parse import ExternalConfig


class ExternalHandler(TemplateHandler):
    plugin = "k8s_external"

    def __init__(self, cfg: ExternalConfig, zones: tuple[str, ...], stanzas: StanzaGroup) -> None:
        self.zones = ZoneSet(zones)
        self.cfg = cfg
        #: The kubernetes stanzas of the server block (filled as they are set up, after this).
        self.stanzas = stanzas
        #: The answers, dropped as the stanza's cluster changes.
        self.followed = FollowedCluster()
        #: Answers built since start (the rest of the queries were served from templates).
        self.built = 0

    @property
    def stanza(self) -> KubernetesHandler:
        """The stanza whose cluster this plugin serves: the block's first."""
        return self.stanzas.handlers[0]

    def template(self, req: Request) -> Entry:
        q = req.query
        zone = self.zones.match(q.lname)
        if zone is None:
            return PASS
        stanza = self.stanza
        gen = self.followed.current(stanza.cluster)
        index = gen.data
        if index is None:
            return PASS if self.cfg.fallthrough.applies(q.lname) else SERVFAIL
        tpl = gen.templates.get(q.key)
        if tpl is None:
            tpl = gen.build(q, lambda deps: self._build(req, index, stanza, deps, zone))
            self.built += 1
        return tpl

    def _build(self, req: Request, index: ClusterIndex, stanza: KubernetesHandler, deps: set[Hashable],
               zone: str) -> bytes | None:
        """The response bytes, or None to pass the question to the next plugin."""
        q = req.query
        if q.qclass != dns.rdataclass.IN:
            return None
        options = Options(ttl=self.cfg.ttl, apex=self.cfg.apex, headless=self.cfg.headless,
                          stanza_ttl=stanza.cfg.ttl, endpoint_pod_names=stanza.cfg.endpoint_pod_names,
                          local_ips=stanza.options.local_ips, first_zone=self.zones.zones[0])
        lookup = ExternalLookup(index.view(deps), zone, options, index.serial)
        outcome, may_fall = lookup.answer(req.qname, q.qtype)
        if outcome.name_error and may_fall and self.cfg.fallthrough.applies(q.lname):
            return None
        return respond(req.message, outcome, lookup.soa(), q)

    @property
    def generation(self) -> DependentGeneration[ClusterIndex | None]:
        return self.followed.generation

    async def stop(self) -> None:
        self.followed.stop()

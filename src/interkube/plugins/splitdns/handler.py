"""The splitdns handler: names that a rule maps to a ready pod of the local cluster, answered
with the pod's addresses from pre-encoded templates; every other name goes to the next plugin.

An answer is built once per question (name, type, class and EDNS shape) and kept as a template,
with the dependency keys of the kubernetes lookups it made (interkube.plugin.followed): a watch
event that changes the endpoints a name maps to drops exactly the answers that read them. A name
that maps to nothing local is kept as PASS with the same keys, so that a pod becoming ready
turns it into an answer. The client's letter case is kept (the answer's owner is the question
name, restored from each query), and no CNAME shows the kubernetes name it stands for.
"""

from __future__ import annotations

import time
from collections.abc import Hashable

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from interkube.dns.names import ZoneSet
from interkube.kube.dnsrecords import Outcome, host_type, respond, rrset, soa_rrset
from interkube.kube.index import ClusterIndex
from interkube.kube.lookup import Lookup
from interkube.plugin.answers import PASS, DependentGeneration, Entry, TemplateHandler
from interkube.plugin.followed import FollowedCluster
from interkube.plugin.kubestanza import KubernetesHandler, StanzaGroup
from interkube.plugin.request import Request
from interkube.plugins.splitdns.parse import HostRule, SplitDnsConfig

A, AAAA = dns.rdatatype.A, dns.rdatatype.AAAA


class SplitDnsHandler(TemplateHandler):
    plugin = "splitdns"

    def __init__(self, cfg: SplitDnsConfig, zones: tuple[str, ...], stanzas: StanzaGroup) -> None:
        self.zones = ZoneSet(zones)
        self.cfg = cfg
        #: The kubernetes stanzas of the server block; `from` picks one by its cluster's name.
        self.stanzas = stanzas
        self.followed = FollowedCluster()
        #: The SOA serial of answers that no cluster data backs (host rules alone).
        self.serial = int(time.time())
        #: Answers built since start (the rest of the queries were served from templates).
        self.built = 0

    @property
    def stanza(self) -> KubernetesHandler | None:
        """The stanza whose cluster answers the templates' names: `from`'s, else the block's first."""
        for handler in self.stanzas.handlers:
            if self.cfg.cluster is None or handler.cluster.name == self.cfg.cluster:
                return handler
        return None

    @property
    def generation(self) -> DependentGeneration[ClusterIndex | None]:
        return self.followed.generation

    def template(self, req: Request) -> Entry:
        q = req.query
        zone = self.zones.match(q.lname)
        if zone is None:
            return PASS
        stanza = self.stanza
        gen = self.followed.generation if stanza is None else self.followed.current(stanza.cluster)
        tpl = gen.templates.get(q.key)
        if tpl is None:
            index = gen.data
            tpl = gen.build(q, lambda deps: self._build(req, index, stanza, deps, zone))
            self.built += 1
        return tpl

    def _build(self, req: Request, index: ClusterIndex | None, stanza: KubernetesHandler | None,
               deps: set[Hashable], zone: str) -> bytes | None:
        """The response bytes, or None to pass the question to the next plugin."""
        q = req.query
        if q.qclass != dns.rdataclass.IN:
            return None
        qname = req.qname
        name = qname.to_text().lower()
        invalid = False
        for rule in self.cfg.rules:
            if isinstance(rule, HostRule):
                addresses = list(rule.addresses) if rule.name == name else []
            else:
                target = rule.target(name)
                if target is None:
                    continue
                try:
                    target_name = dns.name.from_text(target)
                except dns.exception.DNSException:
                    invalid = True  # longer than 255 bytes, a label over 63, an empty label
                    continue
                addresses = self._pod_addresses(target_name, index, stanza, deps)
            if addresses:
                return self._answer(req, qname, zone, addresses, index)
        if invalid and not self.cfg.fallthrough.applies(q.lname):
            return respond(req.message, Outcome(name_error=True), self._soa(zone, index), q)
        return None

    @staticmethod
    def _pod_addresses(target: dns.name.Name, index: ClusterIndex | None, stanza: KubernetesHandler | None,
                       deps: set[Hashable]) -> list[str]:
        """The addresses the kubernetes stanza gives ``target`` (a headless Service's ready
        endpoints, a pod name, a Service's ClusterIPs); none for a name outside its zones, an
        ExternalName, or before the cluster's first sync."""
        if index is None or stanza is None:
            return []
        zone = stanza.zones.match_text(target)
        if zone is None:
            return []
        entries, _ = Lookup(index.view(deps), zone, stanza.options).services(target, A)
        return [kind[1] for e in entries for kind in [host_type(e.host)] if kind is not None]

    def _answer(self, req: Request, qname: dns.name.Name, zone: str, addresses: list[str],
                index: ClusterIndex | None) -> bytes | None:
        qtype = req.query.qtype
        if qtype not in (A, AAAA) and self.cfg.other_types == "next":
            return None
        records: list[dns.rrset.RRset] = []
        if qtype in (A, AAAA):
            texts = list(dict.fromkeys(text for address in addresses for kind in [host_type(address)]
                                       if kind is not None and kind[0] == qtype for text in [kind[1]]))
            if texts:
                records.append(rrset(qname, self.cfg.ttl, qtype, *texts))
        return respond(req.message, Outcome(records), self._soa(zone, index), req.query)

    def _soa(self, zone: str, index: ClusterIndex | None) -> dns.rrset.RRset:
        serial = self.serial if index is None else index.serial
        return soa_rrset(dns.name.from_text(zone), zone, serial, self.cfg.ttl)

    async def stop(self) -> None:
        self.followed.stop()

"""The answer to one question from several clusters' data: the clusterset's merge rules. Pure.

Used by the *clusterset* plugin, and by a kubernetes stanza's ``multicluster`` zones (its one
cluster, in MCS mode).

A function of the question, the zone, the options and the *answering* clusters (synced and
reachable, local first, then in the configured order), each read through an
:class:`~interkube.kube.index.IndexView` that records what the answer depends on. The names,
for a zone ``<zone>``:

* ``<svc>.<ns>.svc.<zone>``: the Service as the clusterset sees it. Its *members* are the
  answering clusters that have it (in MCS mode only where it is exported, never ExternalName);
  the members that answer are chosen once per Service and serve A, AAAA and SRV alike: the
  local cluster alone when ``local_first`` and it has a ready endpoint, else every member with a
  ready endpoint, else (not MCS) the non-headless members, whose ClusterIPs still answer.
  A member answers with its ClusterIPs when it is local or ``remote_clusterip`` is set, with
  its ready endpoint addresses otherwise (headless members always do). In MCS mode a
  ServiceImport of type ClusterSetIP with ``ips`` answers with those instead.
* ``_<port>._<proto>.<svc>.<ns>.svc.<zone>``: SRV, the union of the chosen members' ports of
  that name: the Service's ports targeting ``<svc>.<ns>.svc.<zone>``, and for headless members
  one record per ready endpoint and endpoint port, targeting the endpoint's name.
* ``<hostname>.<cluster>.<svc>.<ns>.svc.<zone>``: a ready endpoint of a headless Service in one
  cluster (cluster names may hold dots); any other name with labels left of the Service
  (``<cluster>.<svc>...`` included) does not exist.
* ``<ns>.svc.<zone>``, ``svc.<zone>``, ``pod.<zone>`` and the apex are empty non-terminals
  (the apex has the SOA); ``dns-version.<zone>`` has TXT "1.0.0" in MCS mode.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import dns.name
import dns.rdatatype
import dns.rrset

from interkube.kube.dnsrecords import (
    SCHEMA_TTL,
    Outcome,
    endpoint_hostname,
    host_type,
    is_ready,
    rrset,
    soa_rrset,
    srv_weight,
)
from interkube.kube.index import IndexView
from interkube.kube.objects import Endpoint, EndpointSlice, Port, Service

A, AAAA, CNAME, SOA, SRV, TXT = (dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.CNAME, dns.rdatatype.SOA,
                                 dns.rdatatype.SRV, dns.rdatatype.TXT)
#: The MCS DNS specification this answers to (KEP-1645, specification.md).
MCS_SCHEMA_VERSION = "1.0.0"
NXDOMAIN = Outcome(name_error=True)


@dataclass(frozen=True)
class Options:
    ttl: int = 5
    local: str | None = None
    local_first: bool = False
    remote_clusterip: bool = False
    mcs: bool = False


@dataclass(frozen=True)
class Source:
    """One answering cluster: its name and its data."""

    name: str
    view: IndexView


@dataclass(frozen=True)
class Member:
    """One cluster's Service of the asked name, as the clusterset counts it."""

    source: Source
    service: Service
    ready: tuple[tuple[EndpointSlice, Endpoint], ...]
    headless: bool      # the Service is headless (or its ServiceImport says so)
    vip: bool           # answers with its ClusterIPs rather than its endpoints


@dataclass
class ServiceSet:
    """Everything the answering clusters know of one Service name."""

    members: list[Member] = field(default_factory=list)
    chosen: list[Member] = field(default_factory=list)
    clusterset_ips: tuple[str, ...] = ()
    import_ports: tuple[Port, ...] = ()
    external: str | None = None


def _matches(port: Port, name: str | None, proto: str | None) -> bool:
    return name is None or (port.name == name and port.protocol.lower() == proto)


class Merge:
    """One question against the clusterset."""

    def __init__(self, sources: Sequence[Source], configured: Sequence[str], zone: str, opts: Options) -> None:
        self.sources = sources
        #: Every configured cluster by its name as a DNS name sees it (lower case).
        self.by_label = {name.lower(): name for name in configured}
        self.answering = {s.name for s in sources}
        self.zone = zone
        self.zone_name = dns.name.from_text(zone)
        self.opts = opts

    # --- the question ----------------------------------------------------------------------

    def answer(self, qname: dns.name.Name, qtype: int) -> Outcome | None:
        """Records, NODATA or NXDOMAIN; None when only clusters that are left out could say
        (SERVFAIL)."""
        labels = [label.decode("latin-1").lower() for label in qname.relativize(self.zone_name).labels]
        if any("." in label for label in labels):
            return NXDOMAIN  # an escaped dot would pose as a cluster ID's
        if not labels:
            return Outcome([self.soa(qname)]) if qtype == SOA else Outcome()
        if labels == ["dns-version"] and self.opts.mcs:
            if qtype == TXT:
                return Outcome([rrset(qname, SCHEMA_TTL, TXT, f'"{MCS_SCHEMA_VERSION}"')])
            return Outcome()
        kind, rest = labels[-1], labels[:-1]
        if kind not in ("svc", "pod"):
            return NXDOMAIN
        if not rest:
            return Outcome()
        if kind == "pod":
            return NXDOMAIN  # pod names belong to each cluster's own zone
        ns = rest[-1]
        if len(rest) == 1:
            return Outcome() if any(s.view.namespace_exists(ns) for s in self.sources) else NXDOMAIN
        svc, left = rest[-2], rest[:-2]
        if not left:
            return self._service(qname, qtype, ns, svc)
        if len(left) == 2 and left[0].startswith("_") and left[1].startswith("_"):
            return self._port(qname, qtype, ns, svc, left[0][1:], left[1][1:])
        if len(left) >= 2 and not left[0].startswith("_"):
            return self._endpoint(qname, qtype, ns, svc, left[0], ".".join(left[1:]))
        return NXDOMAIN

    def soa(self, owner: dns.name.Name) -> dns.rrset.RRset:
        serial = max((s.view.serial for s in self.sources), default=0)
        return soa_rrset(owner, self.zone, serial, self.opts.ttl)

    # --- the clusters' Services ------------------------------------------------------------

    def gather(self, ns: str, svc: str, only: str | None = None) -> ServiceSet:
        """The members of ``svc.ns`` (of cluster ``only``, when given) and the chosen ones."""
        opts = self.opts
        out = ServiceSet()
        imported: frozenset[str] = frozenset()
        headless_import = False
        if opts.mcs:
            # The ServiceImport of the local cluster when it has one (its ips are what that
            # cluster routes), else of the first cluster that has one.
            imp = next(filter(None, (s.view.service_import(ns, svc) for s in self.sources)), None)
            if imp is not None:
                imported = frozenset(c.lower() for c in imp.clusters)
                headless_import = imp.type == "Headless"
                if imp.type == "ClusterSetIP":
                    out.clusterset_ips, out.import_ports = imp.ips, imp.ports
        for source in self.sources:
            if only is not None and source.name != only:
                continue
            view = source.view
            service = view.service(ns, svc)
            if service is None:
                continue
            if service.is_external:
                # Never exported (MCS); elsewhere an alias, taken from the first cluster with one.
                if not opts.mcs and out.external is None and host_type(service.external_name) is None:
                    out.external = service.external_name or None
                continue
            if opts.mcs and view.service_export(ns, svc) is None and source.name.lower() not in imported:
                continue
            headless = service.headless or headless_import
            ready = tuple((slice_, ep) for slice_ in view.slices(ns, svc) for ep in slice_.endpoints
                          if is_ready(service, ep.ready))
            vip = not headless and (source.name == opts.local or opts.remote_clusterip)
            out.members.append(Member(source, service, ready, headless, vip))
        out.chosen = self._choose(out.members)
        return out

    def _choose(self, members: list[Member]) -> list[Member]:
        ready = [m for m in members if m.ready]
        if self.opts.local_first:
            mine = [m for m in ready if m.source.name == self.opts.local]
            if mine:
                return mine
        if ready or self.opts.mcs:
            return ready
        # Nothing ready anywhere: a ClusterIP Service still exists (and answers its ClusterIP
        # where that is the answer, as one cluster's DNS does); a headless one does not.
        return [m for m in members if not m.headless]

    def addresses(self, ss: ServiceSet) -> list[tuple[int, str]]:
        """(A or AAAA, address) of the Service name, each once, in cluster order."""
        if ss.clusterset_ips and ss.chosen:
            ips: Iterable[str] = ss.clusterset_ips
        else:
            ips = (ip for m in ss.chosen
                   for ip in (m.service.cluster_ips if m.vip else [ep.ip for _, ep in m.ready]))
        out: dict[tuple[int, str], None] = {}
        for ip in ips:
            kind = host_type(ip)
            if kind is not None:
                out[kind] = None
        return list(out)

    # --- per name --------------------------------------------------------------------------

    def _service(self, qname: dns.name.Name, qtype: int, ns: str, svc: str) -> Outcome:
        ss = self.gather(ns, svc)
        if not ss.chosen:
            if ss.external is not None and not ss.members:
                return self._cname(qname, qtype, ss.external)
            return NXDOMAIN
        if qtype in (A, AAAA):
            return Outcome(self._rrsets(qname, [a for a in self.addresses(ss) if a[0] == qtype]))
        if qtype == SRV:
            return self._srv(qname, ns, svc, ss, None, None)
        return Outcome()

    def _port(self, qname: dns.name.Name, qtype: int, ns: str, svc: str, port: str, proto: str) -> Outcome:
        ss = self.gather(ns, svc)
        if not ss.chosen:
            return NXDOMAIN
        # The name exists when any member has the port; under local-first the chosen (local)
        # members may lack it, and then it has no records here (NODATA), not NXDOMAIN.
        known = [*ss.import_ports, *(p for m in ss.members for p in m.service.ports),
                 *(p for m in ss.members if m.headless for s, _ in m.ready for p in s.ports)]
        if not any(_matches(p, port, proto) for p in known):
            return NXDOMAIN
        return self._srv(qname, ns, svc, ss, port, proto) if qtype == SRV else Outcome()

    def _endpoint(self, qname: dns.name.Name, qtype: int, ns: str, svc: str, host: str,
                  cluster_label: str) -> Outcome | None:
        name = self.by_label.get(cluster_label)
        if name is None:
            return NXDOMAIN
        if name not in self.answering:
            return None  # only that cluster knows its endpoints, and it is left out
        member = next(iter(self.gather(ns, svc, only=name).members), None)
        if member is None or not member.headless:
            return NXDOMAIN  # no per-cluster names for ClusterIP Services (MCS 2.3.4)
        found = [kind for _, ep in member.ready if endpoint_hostname(ep.hostname, ep.target, ep.ip, False) == host
                 for kind in [host_type(ep.ip)] if kind is not None]
        if not found:
            return NXDOMAIN
        if qtype in (A, AAAA):
            return Outcome(self._rrsets(qname, [a for a in _unique_pairs(found) if a[0] == qtype]))
        return Outcome()

    # --- records ---------------------------------------------------------------------------

    def _rrsets(self, owner: dns.name.Name, addresses: list[tuple[int, str]]) -> list[dns.rrset.RRset]:
        if not addresses:
            return []
        return [rrset(owner, self.opts.ttl, addresses[0][0], *(text for _, text in addresses))]

    def _cname(self, qname: dns.name.Name, qtype: int, target: str) -> Outcome:
        if qtype in (A, AAAA, CNAME):
            return Outcome([rrset(qname, self.opts.ttl, CNAME, target.rstrip(".") + ".")])
        return Outcome()

    def _srv(self, qname: dns.name.Name, ns: str, svc: str, ss: ServiceSet, port: str | None,
             proto: str | None) -> Outcome:
        base = f"{svc}.{ns}.svc.{self.zone}"
        records: dict[tuple[int, str], None] = {}
        extra: dict[str, list[tuple[int, str]]] = {}

        def add(number: int, target: str, addresses: Callable[[], list[tuple[int, str]]]) -> None:
            if number < 0:
                return  # an EndpointSlice port without a number
            records[(number, target)] = None
            if target not in extra:
                extra[target] = addresses()

        if ss.clusterset_ips:
            ports = ss.import_ports or tuple(p for m in ss.chosen for p in m.service.ports)
            for p in ports:
                if _matches(p, port, proto):
                    add(p.port, base, lambda: self.addresses(ss))
        else:
            for m in ss.chosen:
                if not m.headless:
                    for p in m.service.ports:
                        if _matches(p, port, proto):
                            add(p.port, base, lambda: self.addresses(ss))
                    continue
                cluster = m.source.name.lower()
                for slice_, ep in m.ready:
                    target = f"{endpoint_hostname(ep.hostname, ep.target, ep.ip, False)}.{cluster}.{base}"
                    kind = host_type(ep.ip)
                    for p in slice_.ports:
                        if _matches(p, port, proto) and kind is not None:
                            add(p.port, target, lambda: [])
                            if kind not in extra[target]:
                                extra[target].append(kind)
        if not records:
            return Outcome()
        weight = srv_weight(len(records))
        out = Outcome([rrset(qname, self.opts.ttl, SRV, *(f"0 {weight} {n} {t}" for n, t in records))])
        for target, addresses in extra.items():
            owner = dns.name.from_text(target)
            for family in (A, AAAA):
                out.additional.extend(self._rrsets(owner, [a for a in addresses if a[0] == family]))
        return out


def _unique_pairs(pairs: Iterable[tuple[int, str]]) -> list[tuple[int, str]]:
    return list(dict.fromkeys(pairs))

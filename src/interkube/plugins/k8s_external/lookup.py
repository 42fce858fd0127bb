"""The answer to one question of an external zone, as CoreDNS 1.15's k8s_external gives it. Pure.

A function of the question, the zone, the options and one cluster's index (read through an
:class:`~interkube.kube.index.IndexView`, which records what the answer depends on). The names,
for a zone ``<zone>`` and the apex label ``dns``:

* ``<zone>``: SOA (``ns1.dns.<zone> hostmaster.dns.<zone>``, every TTL the plugin's) and NS
  (``ns1.dns.<zone>``, its addresses in the additional section); other types NODATA.
* ``dns.<zone>`` is NODATA; ``ns1.dns.<zone>`` has A/AAAA, the server's own external addresses
  (below); any other name under ``dns.<zone>`` is NXDOMAIN.
* ``<svc>.<ns>.<zone>``: A/AAAA of the Service's external addresses (``externalIPs``, then the
  load balancer's ingress); an ingress hostname is a CNAME (the kubernetes stanza's TTL). With
  ``headless``, a headless Service without external addresses answers with its ready endpoints.
  SRV has one record per address and port (the kubernetes stanza's TTL), targeting the Service
  name (``<endpoint>.<svc>.<ns>.<zone>`` for endpoints), their addresses in the additional
  section. Other types NODATA.
* ``<endpoint>.<svc>.<ns>.<zone>``: the Service's external addresses (the endpoint label is not
  looked at), or with ``headless`` and no external address, that endpoint of the Service,
  headless or not.
* ``_<port>._<proto>.<svc>.<ns>.<zone>``: as the Service's name, for its port of that name and
  protocol.
* ``<ns>.<zone>`` of an existing namespace: NODATA; a namespace that does not exist, and more
  labels than above, NXDOMAIN.
* PTR of a complete reverse name (when the plugin's zones hold the reverse zone):
  ``<svc>.<ns>.<first zone>`` for each Service with that external address.

The server's own external addresses (``ns1.dns``, and the NS record's additional section) are
those of the Services whose ready endpoints are this server's addresses (their external
addresses, or with ``headless`` a headless Service's endpoints), else this server's addresses
themselves, as CoreDNS's kubernetes plugin gives them; loopback addresses never count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.rdatatype
import dns.reversename
import dns.rrset

from interkube.kube.dnsrecords import Outcome, endpoint_hostname, host_type, is_ready, rrset, srv_weight
from interkube.kube.index import IndexView
from interkube.kube.objects import Port, Service

A, AAAA, CNAME, NS, PTR, SOA, SRV = (dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.CNAME, dns.rdatatype.NS,
                                     dns.rdatatype.PTR, dns.rdatatype.SOA, dns.rdatatype.SRV)
#: What a Service without ports stands for (CoreDNS's sentinel port).
NO_PORT = Port("", "", -1)
_IN_ADDR = dns.name.from_text("in-addr.arpa.")
_IP6 = dns.name.from_text("ip6.arpa.")


@dataclass(frozen=True)
class Options:
    ttl: int = 5                # the plugin's: address, PTR, NS and SOA records
    apex: str = "dns"
    headless: bool = False
    #: The kubernetes stanza's: SRV and CNAME records (CoreDNS keeps the backend's TTL in them).
    stanza_ttl: int = 5
    endpoint_pod_names: bool = False
    #: This server's own non-loopback addresses (the stanza's).
    local_ips: tuple[str, ...] = ()
    #: The plugin's first zone, which PTR targets are named in.
    first_zone: str = "."


@dataclass(frozen=True, slots=True)
class Entry:
    """One external address (or name) and port, and the name an SRV record targets."""

    host: str
    port: int
    target: str


class ExternalLookup:
    """One question against one cluster's external names."""

    def __init__(self, view: IndexView, zone: str, opts: Options, serial: int) -> None:
        self.view = view
        self.zone = zone                            # lower case, fully qualified
        self.zone_name = dns.name.from_text(zone)
        self.opts = opts
        self.serial = serial

    # --- records of the zone itself --------------------------------------------------------

    def soa(self) -> dns.rrset.RRset:
        o, z = self.opts, self.zone
        return rrset(self.zone_name, o.ttl, SOA,
                     f"ns1.{o.apex}.{z} hostmaster.{o.apex}.{z} {self.serial} 7200 1800 86400 {o.ttl}")

    def own_addresses(self) -> list[tuple[int, str]]:
        """(A or AAAA, address) of this server as an external client reaches it (CoreDNS's
        nsAddrs for k8s_external)."""
        found = False
        out: list[tuple[int, str]] = []
        for local in self.opts.local_ips:
            for slice_, ep in self.view.endpoints_at(local):
                svc = self.view.service(slice_.namespace, slice_.service)
                if not is_ready(svc, ep.ready):
                    continue
                found = True
                if svc is None:
                    continue
                if self.opts.headless and svc.headless:
                    ips = [e.ip for e in slice_.endpoints if is_ready(svc, e.ready)]
                else:
                    ips = list(svc.external_ips)
                out.extend(kind for ip in ips for kind in [host_type(ip)] if kind is not None)
        if not found:
            out = [kind for ip in self.opts.local_ips for kind in [host_type(ip)] if kind is not None]
        return out

    def _apex(self, qname: dns.name.Name, qtype: int) -> Outcome:
        if qtype == SOA:
            return Outcome([self.soa()])
        if qtype != NS:
            return Outcome()
        target = f"ns1.{self.opts.apex}.{self.zone}"
        out = Outcome([rrset(self.zone_name, self.opts.ttl, NS, target)])
        # Named after the question (CoreDNS joins ns1 and the apex to the name as asked).
        owner = dns.name.from_text(f"ns1.{self.opts.apex}", qname)
        out.additional = self._addresses(owner, self.own_addresses())
        return out

    def _sub_apex(self, qname: dns.name.Name, qtype: int, labels: list[str]) -> Outcome:
        """A name under (or at) ``<apex>.<zone>``: ``labels`` are those left of the zone, the apex
        label included (CoreDNS counts them so: with a two-label apex, only that name exists)."""
        if len(labels) == 1:
            return Outcome()
        if len(labels) != 2 or labels[0] != "ns1":
            return Outcome(name_error=True)
        if qtype not in (A, AAAA):
            return Outcome()
        return Outcome(self._addresses(qname, [a for a in self.own_addresses() if a[0] == qtype]))

    def _addresses(self, owner: dns.name.Name, addresses: Sequence[tuple[int, str]]) -> list[dns.rrset.RRset]:
        out: list[dns.rrset.RRset] = []
        for family in (A, AAAA):
            texts = list(dict.fromkeys(text for kind, text in addresses if kind == family))
            if texts:
                out.append(rrset(owner, self.opts.ttl, family, *texts))
        return out

    # --- the Services ----------------------------------------------------------------------

    def entries(self, labels: list[str]) -> tuple[list[Entry], bool]:
        """(entries, name_error) for the labels left of the zone (CoreDNS's External)."""
        ns = labels[-1]
        if not self.view.namespace_exists(ns):
            return [], True
        if len(labels) == 1:
            return [], False
        name = labels[-2]
        left = [label.removeprefix("_") for label in labels[:-2]]
        endpoint = port = proto = ""
        if len(left) == 1:
            endpoint = left[0]
        elif len(left) == 2:
            port, proto = left
        elif left:
            return [], True
        svc = self.view.service(ns, name)
        if svc is None:
            return [], True
        base = f"{svc.name}.{svc.namespace}.{self.zone}"
        out: list[Entry] = []
        if self.opts.headless and not svc.external_ips and (svc.headless or endpoint):
            for slice_ in self.view.slices(svc.namespace, svc.name):
                for ep in slice_.endpoints:
                    if not is_ready(svc, ep.ready):
                        continue
                    hostname = endpoint_hostname(ep.hostname, ep.target, ep.ip, self.opts.endpoint_pod_names)
                    if endpoint and endpoint != hostname.lower():
                        continue
                    out.extend(Entry(ep.ip, p.port, f"{hostname}.{base}") for p in slice_.ports or (NO_PORT,)
                               if _matches(p, port, proto))
            return out, not out
        for ip in svc.external_ips:
            out.extend(Entry(ip, p.port, base) for p in _ports(svc) if _matches(p, port, proto))
        return out, not out

    def _reverse(self, qname: dns.name.Name) -> Outcome | None:
        """PTR of a complete reverse name, or None when the name is not one."""
        if not (qname.is_subdomain(_IN_ADDR) or qname.is_subdomain(_IP6)):
            return None
        try:
            ip = dns.reversename.to_address(qname)
        except (dns.exception.DNSException, ValueError):
            return None
        if qname.is_subdomain(_IN_ADDR) != (":" not in ip):
            return None
        zone = self.opts.first_zone.strip(".")
        targets = list(dict.fromkeys(".".join(filter(None, (s.name, s.namespace, zone))) + "."
                                     for s in self.view.services_external_at(ip)))
        if not targets:
            return Outcome(name_error=True)
        return Outcome([rrset(qname, self.opts.ttl, PTR, *targets)])

    def answer(self, qname: dns.name.Name, qtype: int) -> tuple[Outcome, bool]:
        """The outcome for a question (records, NODATA, or NXDOMAIN: name_error), and whether
        an NXDOMAIN may fall through (not for the apex and the names under ``<apex>.<zone>``,
        which this plugin alone serves)."""
        name = qname.canonicalize()
        if name == self.zone_name:
            return self._apex(qname, qtype), False
        labels = [label.decode("latin-1").lower() for label in name.relativize(self.zone_name).labels]
        apex = self.opts.apex.lower().rstrip(".").split(".")
        if labels[-len(apex):] == apex:
            return self._sub_apex(qname, qtype, labels), False
        return self._service(qname, qtype, name, labels), True

    def _service(self, qname: dns.name.Name, qtype: int, name: dns.name.Name, labels: list[str]) -> Outcome:
        if qtype == PTR:
            reverse = self._reverse(name)
            if reverse is not None:
                return reverse
        entries, name_error = self.entries(labels)
        if not entries or qtype == PTR:
            return Outcome(name_error=name_error)
        if qtype in (A, AAAA):
            return Outcome(self._address_records(qname, qtype, entries))
        if qtype == SRV:
            return self._srv(qname, entries)
        return Outcome()

    def _address_records(self, qname: dns.name.Name, qtype: int, entries: list[Entry]) -> list[dns.rrset.RRset]:
        out: list[dns.rrset.RRset] = []
        cnames = list(dict.fromkeys(e.host for e in entries if host_type(e.host) is None))
        if cnames:
            # A load balancer known by its hostname: the resolver follows it (CoreDNS also asks
            # its own server for the target, which answers nothing more for a name outside).
            out.append(rrset(qname, self.opts.stanza_ttl, CNAME, *(f"{h}." for h in cnames)))
        out.extend(self._addresses(qname, [k for e in entries for k in [host_type(e.host)]
                                           if k is not None and k[0] == qtype]))
        return out

    def _srv(self, qname: dns.name.Name, entries: list[Entry]) -> Outcome:
        weight = srv_weight(len(entries))
        records: dict[tuple[str, int], None] = {}
        extra: dict[str, list[tuple[int, str]]] = {}
        for e in entries:
            if e.port == -1:
                continue
            kind = host_type(e.host)
            target = e.target if kind is not None else f"{e.host}."
            records[(target, e.port)] = None
            if kind is not None:
                extra.setdefault(target, [])
                if kind not in extra[target]:
                    extra[target].append(kind)
        if not records:
            return Outcome()
        out = Outcome([rrset(qname, self.opts.stanza_ttl, SRV, *(f"0 {weight} {port} {target}"
                                                                 for target, port in records))])
        for target, addresses in extra.items():
            out.additional.extend(self._addresses(dns.name.from_text(target), addresses))
        return out


def _ports(svc: Service) -> tuple[Port, ...]:
    return svc.ports or (NO_PORT,)


def _matches(p: Port, port: str, proto: str) -> bool:
    """CoreDNS's matchPortAndProtocol: the question's port name and protocol, when given."""
    return (not port or port == p.name) and (not proto or proto == p.protocol.lower())

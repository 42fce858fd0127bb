"""The answer to one question from one cluster's data, as CoreDNS's kubernetes plugin gives it
(for the kubernetes and kubernetai stanzas of :mod:`interkube.plugin.kubestanza`).

Pure: a function of the question, the zone, the options and the index (read through an
:class:`~interkube.kube.index.IndexView`, which records what each answer depends on). The steps
follow CoreDNS so that its answers, including the odd corners, are reproduced:

* the name is parsed as ``[_port._proto. | endpoint.] service.namespace.(svc|pod).zone``;
  ``zone``, ``svc.zone`` and ``pod.zone`` exist (NODATA), a last label other than svc/pod or
  more than two labels left of the service is NXDOMAIN;
* a namespace exists when it holds a Service (or, with ``pods verified``, a Pod);
* a Service gives *entries* (address, port, name): one per ClusterIP and port matching the
  question's port/protocol, one per ready endpoint address and port for headless Services and
  for endpoint names, the external name for ExternalName Services;
* A/AAAA/SRV/CNAME/PTR/TXT/NS/SOA each turn the entries into records as CoreDNS's backend
  lookup does; any other type answers NODATA for a name that exists and NXDOMAIN otherwise.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset

from interkube.kube.dnsrecords import (
    SCHEMA_TTL,
    Outcome,
    endpoint_hostname,
    soa_rrset,
    srv_weight,
)
from interkube.kube.dnsrecords import host_type as _host_type
from interkube.kube.dnsrecords import is_ready as _ready
from interkube.kube.dnsrecords import rrset as _rrset
from interkube.kube.index import IndexView
from interkube.kube.objects import Port

DNS_SCHEMA_VERSION = "1.1.0"
#: A, AAAA: how many CNAMEs an answer may hold before a chain is cut (as CoreDNS).
MAX_CNAME_CHAIN = 8

A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT = (dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.CNAME,
                                          dns.rdatatype.NS, dns.rdatatype.PTR, dns.rdatatype.SOA,
                                          dns.rdatatype.SRV, dns.rdatatype.TXT)
IN = dns.rdataclass.IN
NO_PORT = Port("", "", -1)


@dataclass(frozen=True)
class Options:
    """The stanza options that shape answers (the rest shape the data)."""

    ttl: int = 5
    pods: str = "disabled"              # disabled, insecure, verified
    endpoint_pod_names: bool = False
    ignore_empty_service: bool = False
    primary_zone: str = "cluster.local."  # PTR targets are named in the first non-reverse zone
    #: This server's own addresses (non-loopback), for the NS records (see ns_addresses).
    local_ips: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Entry:
    """What CoreDNS calls a msg.Service: an address or a target name, a port, the entry's name."""

    host: str           # an IP address, or a domain name (ExternalName), or TXT text
    port: int = 0
    name: str = ""      # the entry's own name (SRV target), fully qualified
    ttl: int = 0


@dataclass(frozen=True)
class Request:
    """A parsed question name (CoreDNS's recordRequest)."""

    kind: str = ""          # svc, pod, or "" for the apex, svc.zone and pod.zone
    namespace: str = ""
    service: str = ""
    endpoint: str = ""
    port: str = ""
    protocol: str = ""


INVALID = Request(kind="invalid")


def _text(label: bytes) -> str:
    return label.decode("latin-1").lower()


def parse_request(labels: Sequence[str]) -> Request:
    """Labels left of the zone (leftmost first) as a request; INVALID when they cannot be one."""
    if not labels or list(labels) in (["svc"], ["pod"]):
        return Request()
    kind = labels[-1]
    if kind not in ("svc", "pod"):
        return INVALID
    rest = labels[:-1]
    if not rest:
        return Request(kind=kind)
    namespace = rest[-1]
    if len(rest) == 1:
        return Request(kind=kind, namespace=namespace)
    service = rest[-2]
    left = rest[:-2]
    if not left:
        return Request(kind=kind, namespace=namespace, service=service)
    if len(left) == 1:
        return Request(kind=kind, namespace=namespace, service=service, endpoint=left[0])
    if len(left) == 2:
        return Request(kind=kind, namespace=namespace, service=service,
                       port=left[0].removeprefix("_"), protocol=left[1].removeprefix("_"))
    return INVALID


def _port_matches(r: Request, port: Port) -> bool:
    """CoreDNS's matchPortAndProtocol: the request's port and protocol, when given, must match."""
    return (not r.port or r.port == port.name) and (not r.protocol or r.protocol == port.protocol.lower())


class Lookup:
    """One question against one cluster: the steps of CoreDNS's handler and backend."""

    def __init__(self, view: IndexView, zone: str, opts: Options, serial: int | None = None) -> None:
        self.view = view
        self.zone = zone                    # the matched zone, lower case, fully qualified
        self.zone_name = dns.name.from_text(zone)
        self.opts = opts
        #: The SOA serial; None: the index's (see interkube.kube.xfr.ChangeSerial for the other).
        self.serial = serial

    # --- names -----------------------------------------------------------------------------

    def _labels(self, name: dns.name.Name) -> list[str]:
        return [_text(label) for label in name.relativize(self.zone_name).labels if label]

    def _is_apex(self, name: dns.name.Name) -> bool:
        return bool(name == self.zone_name)  # dnspython leaves Name.__eq__ unannotated

    def _in_zone(self, target: str) -> bool:
        try:
            return dns.name.from_text(target).is_subdomain(self.zone_name)
        except dns.exception.DNSException:
            return False

    # --- CoreDNS's Records / findServices / findPods ---------------------------------------

    def records(self, name: dns.name.Name) -> tuple[list[Entry], bool]:
        """(entries, name_error) for a name (CoreDNS's Records)."""
        r = parse_request(self._labels(name))
        if r is INVALID:
            return [], True
        if not r.kind:
            return [], False
        if name.is_subdomain(_IN_ADDR) or name.is_subdomain(_IP6):
            return [], True
        if not self.view.namespace_exists(r.namespace):
            return [], True
        if r.kind == "pod":
            return self._pods(r)
        return self._services(r)

    def _pods(self, r: Request) -> tuple[list[Entry], bool]:
        if self.opts.pods == "disabled":
            return [], True
        podname = r.service
        if not podname:
            return [], False
        if podname.count("-") == 3 and "--" not in podname:
            ip = podname.replace("-", ".")
        else:
            ip = podname.replace("-", ":")
        # Named as asked: an SRV question gets the pod's own name as its target (as CoreDNS).
        entry = Entry(host=ip, name=f"{podname}.{r.namespace}.pod.{self.zone}", ttl=self.opts.ttl)
        if self.opts.pods == "insecure":
            if _host_type(ip) is None:
                return [], True
            return [entry], False
        # verified: a pod with this IP in this namespace
        if r.namespace in self.view.pod_namespaces_at(ip):
            return [entry], False
        return [], True

    def _services(self, r: Request) -> tuple[list[Entry], bool]:
        if not r.service:
            return [], False
        svc = self.view.service(r.namespace, r.service)
        if svc is None:
            return [], True
        ttl = self.opts.ttl
        if self.opts.ignore_empty_service and not svc.is_external and not svc.headless:
            slices = self.view.slices(svc.namespace, svc.name)
            if not any(_ready(svc, ep.ready) for s in slices for ep in s.endpoints):
                return [], True
        if svc.is_external:
            # No endpoints behind an ExternalName, and no port/protocol names for it either.
            if r.endpoint or r.port or r.protocol or not svc.external_name:
                return [], True
            if _host_type(svc.external_name) is not None:
                return [], True  # an IP as external name is no CNAME target: CoreDNS skips it
            return [Entry(host=svc.external_name, ttl=ttl)], False
        base = f"{svc.name}.{svc.namespace}.svc.{self.zone}"
        entries: list[Entry] = []
        found = False
        if svc.headless or r.endpoint:
            for slice_ in self.view.slices(svc.namespace, svc.name):
                for ep in slice_.endpoints:
                    if not _ready(svc, ep.ready):
                        continue
                    hostname = endpoint_hostname(ep.hostname, ep.target, ep.ip, self.opts.endpoint_pod_names)
                    if r.endpoint and r.endpoint != hostname:
                        continue
                    for port in slice_.ports or (NO_PORT,):
                        if not _port_matches(r, port):
                            continue
                        entries.append(Entry(ep.ip, port.port, f"{hostname}.{base}", ttl))
                        found = True
            return entries, not found
        for port in svc.ports:
            if not _port_matches(r, port):
                continue
            found = True
            entries.extend(Entry(ip, port.port, base, ttl) for ip in svc.cluster_ips)
        return entries, not found

    # --- CoreDNS's Services (the backend entry point) --------------------------------------

    def services(self, name: dns.name.Name, qtype: int) -> tuple[list[Entry], bool]:
        if qtype == TXT:
            labels = self._labels(name)
            if labels == ["dns-version"]:
                return [Entry(host=DNS_SCHEMA_VERSION, ttl=SCHEMA_TTL)], False
            # No other TXT: NODATA where the name exists, NXDOMAIN where it does not. (CoreDNS
            # also says NXDOMAIN at the apex, the empty non-terminals and ns.dns, which do
            # exist: see docs/divergences.md.)
            if name == dns.name.from_text("ns.dns", self.zone_name):
                return [], False
            _, name_error = self.records(name)
            return [], name_error
        if qtype == NS:
            return self.ns_addresses(), False
        if name == dns.name.from_text("ns.dns", self.zone_name):
            wanted = 4 if qtype == A else 6 if qtype == AAAA else 0
            return [Entry(e.host, 0, name.to_text().lower(), e.ttl) for e in self.ns_addresses()
                    if ipaddress.ip_address(e.host).version == wanted], False
        entries, name_error = self.records(name)
        if qtype == SRV:
            entries = [e for e in entries if _host_type(e.host) is not None]
        return entries, name_error

    def ns_addresses(self) -> list[Entry]:
        """The name servers of the zone (CoreDNS's nsAddrs): the Services whose endpoints are
        this server's own addresses, or ns.dns.<zone> with those addresses."""
        ttl = self.opts.ttl
        out: list[Entry] = []
        found = False
        for local in self.opts.local_ips:
            for slice_, _ in self.view.endpoints_at(local):
                found = True
                svc = self.view.service(slice_.namespace, slice_.service)
                if svc is None:
                    continue
                base = f"{svc.name}.{svc.namespace}.svc.{self.zone}"
                if svc.headless:
                    pod_names = self.opts.endpoint_pod_names
                    out.extend(Entry(ep.ip, 0, f"{endpoint_hostname(ep.hostname, ep.target, ep.ip, pod_names)}.{base}",
                                     ttl) for ep in slice_.endpoints if _ready(svc, ep.ready))
                else:
                    out.extend(Entry(ip, 0, base, ttl) for ip in svc.cluster_ips)
        if not found:
            out = [Entry(ip, 0, f"ns.dns.{self.zone}", ttl) for ip in self.opts.local_ips]
        return out

    # --- per type (CoreDNS's plugin/backend_lookup.go) -------------------------------------

    def address(self, name: dns.name.Name, qtype: int, owner: dns.name.Name,
                previous: list[tuple[str, str]] | None = None) -> tuple[list[dns.rrset.RRset], bool]:
        """A or AAAA records (following ExternalName CNAMEs inside the zone)."""
        previous = previous or []
        entries: list[Entry]
        if self._is_apex(name):
            entries, name_error = [], False
        else:
            entries, name_error = self.services(name, qtype)
        if name_error:
            return [], True
        out: list[dns.rrset.RRset] = []
        seen: set[str] = set()
        addresses: list[str] = []
        ttl = self.opts.ttl
        for entry in entries:
            kind = _host_type(entry.host)
            if kind is None:
                target = entry.host.lower().rstrip(".") + "."
                if dns.name.from_text(target) == name:
                    continue  # x CNAME x
                if len(previous) > MAX_CNAME_CHAIN - 1:
                    continue
                link = (owner.to_text().lower(), target)
                if link in previous:
                    continue
                cname = _rrset(owner, entry.ttl, CNAME, target)
                if self._in_zone(target):
                    target_name = dns.name.from_text(target)
                    chained, error = self.address(target_name, qtype, target_name, [*previous, link])
                    if not error and chained:
                        out.append(cname)
                        out.extend(chained)
                    continue
                # Outside our zones CoreDNS asks its own server chain; we answer the CNAME and
                # leave the rest to the resolver (see the README).
                out.append(cname)
                continue
            family, text = kind
            if family == qtype and text not in seen:
                seen.add(text)
                addresses.append(text)
        if addresses:
            out.append(_rrset(owner, ttl, qtype, *addresses))
        return out, False

    def srv(self, name: dns.name.Name) -> tuple[Outcome, bool]:
        entries, name_error = self.services(name, SRV)
        if name_error:
            return Outcome(), True
        # CoreDNS weights: 100 split evenly over the entries of one priority (all are 0),
        # counting the port-less ones, floored, at least 1.
        weight = srv_weight(len(entries))
        records: list[str] = []
        extra: dict[tuple[str, int], list[str]] = {}
        seen_srv: set[tuple[str, int]] = set()
        seen_addr: set[tuple[str, str]] = set()
        for entry in entries:
            if entry.port == -1:
                continue
            kind = _host_type(entry.host)
            if kind is None:
                continue
            if (entry.name, entry.port) not in seen_srv:
                seen_srv.add((entry.name, entry.port))
                records.append(f"0 {weight} {entry.port} {entry.name}")
            if (entry.name, entry.host) not in seen_addr:
                seen_addr.add((entry.name, entry.host))
                extra.setdefault((entry.name, kind[0]), []).append(kind[1])
        outcome = Outcome()
        if records:
            outcome.answer.append(_rrset(name, self.opts.ttl, SRV, *records))
            for (target, rdtype), addresses in extra.items():
                outcome.additional.append(_rrset(dns.name.from_text(target), self.opts.ttl, rdtype, *addresses))
        return outcome, False

    def ptr(self, name: dns.name.Name) -> tuple[list[dns.rrset.RRset], bool]:
        ip = _reverse_address(name)
        if ip is None:
            _, name_error = self.records(name)
            return [], name_error
        targets: list[str] = []
        owners = self.view.services_at(ip)
        if owners:
            svc = owners[0]
            targets.append(f"{svc.name}.{svc.namespace}.svc.{self.opts.primary_zone}")
        else:
            for slice_, ep in self.view.endpoints_at(ip):
                service = self.view.service(slice_.namespace, slice_.service)
                if not _ready(service, ep.ready):
                    continue
                hostname = endpoint_hostname(ep.hostname, ep.target, ep.ip, self.opts.endpoint_pod_names)
                target = f"{hostname}.{slice_.service}.{slice_.namespace}.svc.{self.opts.primary_zone}"
                if target not in targets:
                    targets.append(target)
        if not targets:
            return [], True
        return [_rrset(name, self.opts.ttl, PTR, *targets)], False

    def ns(self, name: dns.name.Name) -> tuple[Outcome, bool]:
        outcome = Outcome()
        targets: list[str] = []
        extra: dict[tuple[str, int], list[str]] = {}
        for entry in self.ns_addresses():
            kind = _host_type(entry.host)
            if kind is None:
                continue
            if entry.name not in targets:
                targets.append(entry.name)
            extra.setdefault((entry.name, kind[0]), []).append(kind[1])
        if targets:
            outcome.answer.append(_rrset(name, self.opts.ttl, NS, *targets))
            for (target, rdtype), addresses in extra.items():
                outcome.additional.append(_rrset(dns.name.from_text(target), self.opts.ttl, rdtype, *addresses))
        return outcome, False

    def soa(self, owner: dns.name.Name) -> dns.rrset.RRset:
        return soa_rrset(owner, self.zone, self.view.serial if self.serial is None else self.serial, self.opts.ttl)

    # --- the handler's switch --------------------------------------------------------------

    def answer(self, qname: dns.name.Name, qtype: int) -> Outcome:
        """The outcome for a question: records, NODATA, or NXDOMAIN (name_error)."""
        name = qname.canonicalize()
        out = Outcome()
        if qtype in (A, AAAA):
            out.answer, out.name_error = self.address(name, qtype, qname)
        elif qtype == TXT:
            entries, out.name_error = self.services(name, TXT)
            if entries:
                out.answer.append(_rrset(qname, entries[0].ttl, TXT, f'"{entries[0].host}"'))
        elif qtype == CNAME:
            entries, out.name_error = self.services(name, CNAME)
            if entries and _host_type(entries[0].host) is None:
                out.answer.append(_rrset(qname, entries[0].ttl, CNAME, entries[0].host.rstrip(".") + "."))
        elif qtype == PTR:
            out.answer, out.name_error = self.ptr(name)
        elif qtype == SRV:
            out, out.name_error = self.srv(qname)
        elif qtype == SOA:
            if self._is_apex(name):
                out.answer.append(self.soa(qname))
        elif qtype == NS and self._is_apex(name):
            out, out.name_error = self.ns(qname)
        else:
            # Any other type: NODATA where an A question finds the name, else NXDOMAIN.
            _, out.name_error = self.address(name, A, qname)
        if out.name_error:
            out.answer, out.additional = [], []
        return out


_IN_ADDR = dns.name.from_text("in-addr.arpa.")
_IP6 = dns.name.from_text("ip6.arpa.")


def _reverse_address(name: dns.name.Name) -> str | None:
    """The address a complete reverse name stands for (1.0.96.10.in-addr.arpa -> 10.96.0.1)."""
    if not (name.is_subdomain(_IN_ADDR) or name.is_subdomain(_IP6)):
        return None
    try:
        return dns.reversename.to_address(name)
    except (dns.exception.SyntaxError, ValueError, dns.exception.DNSException):
        return None

"""A cluster's zone in transfer order, as CoreDNS's kubernetes plugin sends it. Pure, no I/O.

What a zone transfer of a kubernetes zone holds (CoreDNS 1.15's Transfer): the zone's NS
records and their addresses, then for each Service, by name (then namespace):

* a Service with ClusterIPs: an A or AAAA record per address at ``svc.ns.svc.<zone>``; per port
  an SRV record there (weight 100, the Service's name as target), and for a named port one at
  ``_port._proto.svc.ns.svc.<zone>``;
* a headless Service: per ready endpoint address (see :func:`~interkube.kube.dnsrecords.is_ready`)
  an A or AAAA record at the Service's name and one at the endpoint's
  (``host.svc.ns.svc.<zone>``), and per named port of its slice an SRV record at
  ``_port._proto.svc.ns.svc.<zone>`` naming the endpoint (the weight split over the slice's
  ready addresses, as in answers);
* an ExternalName Service: its CNAME (none when the external name is an address).

No PTR, pod or ``dns-version`` records: they are not in CoreDNS's transfers either. The records
are made one Service at a time, when the transfer asks for them: a cluster's zone may hold tens
of thousands of records, and the Services are listed when the transfer starts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import dns.name
import dns.rdatatype
import dns.rrset

from interkube.kube.dnsrecords import endpoint_hostname, host_type, is_ready, rrset, soa_rrset, srv_weight
from interkube.kube.index import ClusterIndex, DepKey
from interkube.kube.lookup import Lookup, Options
from interkube.kube.objects import Service

A, CNAME, NS, SRV = dns.rdatatype.A, dns.rdatatype.CNAME, dns.rdatatype.NS, dns.rdatatype.SRV
#: The dependency key of every answer that shows the zone's serial (NODATA, NXDOMAIN, SOA): what
#: a change drops when the serial follows the changes (see ChangeSerial).
SERIAL_DEP = ("serial",)
#: An owner name and its records (interkube.plugin.transfer.Owned, which this layer cannot import).
Owned = tuple[dns.name.Name, dns.rrset.RRset]


#: The kinds of dependency keys (see interkube.kube.index) whose changes change what a transfer
#: holds: a Service or its EndpointSlices, and the Services and endpoints at an address (the name
#: servers' records). Namespaces, Pods and the MCS objects are not in a transfer.
_TRANSFERRED = frozenset({"s", "i"})


def changes_transfer(keys: set[DepKey] | None) -> bool:
    """Whether a change (its dependency keys; None: the whole index replaced) changes what a
    transfer of the cluster's zones holds."""
    return keys is None or any(key[0] in _TRANSFERRED for key in keys)


class ChangeSerial:
    """The SOA serial of a zone that is transferred: the time of the last change, as CoreDNS's.

    A secondary transfers again only when the serial it is shown moved, so once a zone can be
    transferred, every change must move it. It moves lazily: a change marks it stale (and the
    answers showing it are dropped once, see SERIAL_DEP), and the next reading takes the clock,
    and never less than one more than before (two changes in one second still make two serials).
    """

    __slots__ = ("dirty", "value")

    def __init__(self) -> None:
        self.value = 0
        self.dirty = True

    def changed(self) -> bool:
        """Note a change; True when the serial was current (answers showing it must go)."""
        was_current = not self.dirty
        self.dirty = True
        return was_current

    def read(self, index: ClusterIndex) -> int:
        if self.dirty:
            self.value = max(self.value + 1, int(time.time()), index.serial)
            self.dirty = False
        return self.value


def zone_soa(zone: str, serial: int, opts: Options) -> dns.rrset.RRset:
    return soa_rrset(dns.name.from_text(zone), zone, serial, opts.ttl)


def zone_records(index: ClusterIndex, zone: str, opts: Options) -> Iterator[list[Owned]]:
    """Every record of ``zone`` but its SOA, in transfer order, as (owner, RRset): one batch for
    the name servers, then one per Service."""
    origin = dns.name.from_text(zone)
    lookup = Lookup(index.view(set()), zone, opts)
    servers = lookup.ns_addresses()
    if servers:
        hosts = list(dict.fromkeys(e.name for e in servers))
        batch = [rrset(origin, opts.ttl, NS, *hosts)]
        for e in servers:
            batch.extend(_addresses(e.name, (e.host,), opts.ttl))
        yield [(rs.name, rs) for rs in batch]
    # Listed now: the index changes under a long transfer (a Service's own records are read
    # when its turn comes, as CoreDNS reads its endpoints).
    services = sorted(index.services(), key=lambda s: (s.name, s.namespace))
    for svc in services:
        batch = _service(index, svc, zone, opts)
        if batch:
            yield [(rs.name, rs) for rs in batch]


def _service(index: ClusterIndex, svc: Service, zone: str, opts: Options) -> list[dns.rrset.RRset]:
    name = f"{svc.name}.{svc.namespace}.svc.{zone}"
    ttl = opts.ttl
    out: list[dns.rrset.RRset] = []
    if svc.is_external:
        if svc.external_name and host_type(svc.external_name) is None:
            out.append(rrset(dns.name.from_text(name), ttl, CNAME, svc.external_name.rstrip(".") + "."))
        return out
    if svc.headless:
        for slice_ in index.slices(svc.namespace, svc.name):
            ready = [ep for ep in slice_.endpoints if is_ready(svc, ep.ready)]
            weight = srv_weight(len(ready))
            for ep in ready:
                host = f"{endpoint_hostname(ep.hostname, ep.target, ep.ip, opts.endpoint_pod_names)}.{name}"
                out.extend(_addresses(name, (ep.ip,), ttl))
                out.extend(_addresses(host, (ep.ip,), ttl))
                out.extend(rrset(_port_name(name, p.name, p.protocol), ttl, SRV, f"0 {weight} {p.port} {host}")
                           for p in slice_.ports if p.name and p.port >= 0)
        return out
    if not svc.cluster_ips:
        return out
    out.extend(_addresses(name, svc.cluster_ips, ttl))
    for p in svc.ports:
        out.append(rrset(dns.name.from_text(name), ttl, SRV, f"0 100 {p.port} {name}"))
        if p.name:
            out.append(rrset(_port_name(name, p.name, p.protocol), ttl, SRV, f"0 100 {p.port} {name}"))
    return out


def _port_name(service: str, port: str, protocol: str) -> dns.name.Name:
    return dns.name.from_text(f"_{port.lower()}._{protocol.lower()}.{service}")


def _addresses(owner: str, ips: tuple[str, ...], ttl: int) -> list[dns.rrset.RRset]:
    """The A and AAAA records of ``ips`` at ``owner`` (an RRset per family)."""
    by_type: dict[int, list[str]] = {}
    for kind in (host_type(ip) for ip in ips):
        if kind is not None:
            by_type.setdefault(kind[0], []).append(kind[1])
    name = dns.name.from_text(owner)
    return [rrset(name, ttl, rdtype, *texts) for rdtype, texts in by_type.items()]

"""Records from cluster data, shared by the plugins that answer from it (kubernetes, clusterset).

Pure, no I/O: turning addresses and names into dnspython RRsets, the few rules both plugins
apply to endpoints (which count as ready, what an endpoint is called), the zone's SOA, and the
response an :class:`Outcome` becomes.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field

import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from interkube.dns.message import make_response, render
from interkube.dns.negative import SoaRecord, negative_response
from interkube.dns.wire import RCODE_NOERROR, RCODE_NXDOMAIN, Query
from interkube.kube.objects import Service

A, AAAA, SOA = dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.SOA
IN = dns.rdataclass.IN
#: CoreDNS's answer TTL for cluster data (plugin/kubernetes): 5 s by default, 0 to 3600.
DEFAULT_TTL = 5
MAX_TTL = 3600
#: CoreDNS answers dns-version.<zone> with this TTL, whatever the `ttl` option says.
SCHEMA_TTL = 28800
#: The SOA TTL is the `ttl` option, but at most this (CoreDNS's backend).
MAX_SOA_TTL = 300


@dataclass
class Outcome:
    """What the question gets: records, or NODATA (no records), or NXDOMAIN (name_error)."""

    answer: list[dns.rrset.RRset] = field(default_factory=list)
    additional: list[dns.rrset.RRset] = field(default_factory=list)
    name_error: bool = False


def rrset(owner: dns.name.Name, ttl: int, rdtype: int, *rdatas: str) -> dns.rrset.RRset:
    """An RRset of ``rdtype`` at ``owner`` from rdata texts."""
    rdtype = dns.rdatatype.RdataType.make(rdtype)
    out = dns.rrset.RRset(owner, IN, rdtype)
    out.update_ttl(ttl)
    for text in rdatas:
        out.add(dns.rdata.from_text(IN, rdtype, text), ttl)
    return out


def host_type(host: str) -> tuple[int, str] | None:
    """(A or AAAA, address text) when ``host`` is an IP address (an IPv4-mapped IPv6 address
    answers as A, as Go's To4 sees it); None for a name."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        return A, str(address.ipv4_mapped)
    return (A if address.version == 4 else AAAA), str(address)


def endpoint_hostname(hostname: str, target: str, ip: str, pod_names: bool) -> str:
    """The endpoint's name: its hostname, else (endpoint_pod_names) its pod, else the dashed IP."""
    if hostname:
        return hostname
    if pod_names and target:
        return target
    if "." in ip:
        return ip.replace(".", "-")
    # An IPv6 address ending in "::" would give a label ending in "-"; CoreDNS appends a 0.
    dashed = ip.replace(":", "-")
    return dashed + "0" if dashed.endswith("-") else dashed


def is_ready(service: Service | None, ready: bool) -> bool:
    """Whether an endpoint counts: ready, or its Service publishes not-ready addresses."""
    # publishNotReadyAddresses makes every endpoint count (the spec's "ready"); the EndpointSlice
    # controller marks them ready itself, but snapshots and other controllers may not.
    return ready or (service is not None and service.publish_not_ready)


def srv_weight(count: int) -> int:
    """CoreDNS's SRV weight: 100 split evenly over the ``count`` entries of one priority (all
    are 0), floored, at least 1; 0 when there are none."""
    if not count:
        return 0
    return max(1, math.floor(100.0 / (100 * count) * 100))


def soa_rrset(owner: dns.name.Name, zone: str, serial: int, ttl: int) -> dns.rrset.RRset:
    """The zone's SOA as CoreDNS writes it: ``ns.dns.<zone> hostmaster.<zone>``, minimum the TTL."""
    return rrset(owner, min(ttl, MAX_SOA_TTL), SOA,
                 f"ns.dns.{zone} hostmaster.{zone} {serial} 7200 1800 86400 {ttl}")


def respond(query: dns.message.Message, outcome: Outcome, soa: dns.rrset.RRset, wire: Query | None = None) -> bytes:
    """The authoritative response bytes for an outcome: its records, or the SOA when it has
    none (NODATA, or NXDOMAIN when ``name_error``). With ``wire`` (the query as the fast parser
    read it), an answer without records is written on the wire (interkube.dns.negative: the
    same bytes, without dnspython's render)."""
    if wire is not None and not outcome.answer:
        negative = negative_response(wire, RCODE_NXDOMAIN if outcome.name_error else RCODE_NOERROR,
                                     SoaRecord.from_rrset(soa))
        if negative is not None:
            return negative
    response = make_response(query)
    if outcome.name_error:
        response.set_rcode(dns.rcode.NXDOMAIN)
    if outcome.answer:
        response.answer.extend(outcome.answer)
        response.additional.extend(outcome.additional)
    else:
        response.authority.append(soa)
    return render(response)

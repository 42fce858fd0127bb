"""Address allocation for N new clusters: non-overlapping ranges with headroom, optionally IPv6.

Each cluster gets one aligned block of the supernet holding its pod, node and Service ranges
(largest first, so each stays aligned to its own size). Every range is unique, Service ranges
included, so that VIP proxying between any two clusters (R6; scenario: Discovery across
clusters, VIP proxying and the merged domain, docs/scenarios.md) stays possible later.

IPv6 comes from a base prefix: a ULA /48 derived from a seed (RFC 4193 wants the 40-bit Global
ID random; a hash of the seed is random enough and reproducible), or a prefix the user owns.
With ``ipv6_from_ipv4`` each IPv6 range is computed from its IPv4 range (an idea from the
scenario IPv6 between clusters: track one family, derive the other): the offset of the IPv4
range inside the supernet is placed right after the base prefix. That mapping is one-to-one, so
derived prefixes cannot collide.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from dataclasses import dataclass

from interkube.errors import PlanError
from interkube.netplan.model import (
    Address,
    AddressRange,
    Cluster,
    ClusterDns,
    IPNetwork,
    Link,
    LinkKind,
    Origin,
    PerNodePrefix,
    Plan,
)
from interkube.netplan.rules import RESERVED

HEADROOM = 2               # every count is doubled before it is rounded up to a CIDR block
RESERVED_PER_SUBNET = 3    # network, gateway and broadcast addresses of a node subnet or pod CIDR
MAX_SERVICE_BITS = 20      # kube-apiserver refuses Service ranges larger than 2^20 addresses
MIN_SERVICE_BITS = 4       # room for the DNS Service at .10
MIN_V6_SERVICE_BITS = 16   # a /112: the customary IPv6 Service range
DNS_SERVICE_OFFSET = 10    # kubeadm and most distributions put the DNS Service at .10
ULA_PREFIX = ipaddress.IPv6Network("fd00::/8")


@dataclass(frozen=True)
class Sizing:
    """What ``interkube plan`` was asked for."""

    clusters: int
    supernet: ipaddress.IPv4Network = ipaddress.IPv4Network("10.0.0.0/8")
    nodes: int = 100
    pods_per_node: int = 110
    services: int = 4096
    ipv6: str | None = None            # "ula" or an IPv6 prefix
    ipv6_from_ipv4: bool = False
    topology: str = "hub"              # "hub" or "mesh"
    seed: str = "interkube"            # makes the ULA prefix reproducible
    name_prefix: str = "cluster"


@dataclass(frozen=True)
class _Layout:
    """Prefix lengths of one cluster's IPv4 ranges."""

    pods: int
    per_node: int
    nodes: int
    services: int
    block: int


def _bits_for(count: int) -> int:
    """Host bits of the smallest block holding ``count`` addresses."""
    return max(0, math.ceil(math.log2(max(count, 1))))


def ula_prefix(seed: str) -> ipaddress.IPv6Network:
    """The ULA /48 for ``seed``: fd00::/8 followed by 40 bits of SHA-256(seed)."""
    global_id = int.from_bytes(hashlib.sha256(seed.encode("utf-8")).digest()[:5], "big")
    return ipaddress.IPv6Network((int(ULA_PREFIX.network_address) | global_id << 80, 48))


def _refuse_reserved(network: IPNetwork, option: str) -> None:
    for reserved, what in RESERVED:
        if network.overlaps(reserved):
            raise PlanError(f"{option} {network} overlaps the {what} range {reserved}")


def _ipv4_layout(sizing: Sizing) -> _Layout:
    _refuse_reserved(sizing.supernet, "--supernet")
    if sizing.clusters < 1:
        raise PlanError("--clusters must be at least 1")
    if sizing.nodes < 1 or sizing.pods_per_node < 1 or sizing.services < 1:
        raise PlanError("--nodes, --pods-per-node and --services must be at least 1")
    per_node = 32 - _bits_for(sizing.pods_per_node * HEADROOM + RESERVED_PER_SUBNET)
    node_slot_bits = _bits_for(sizing.nodes * HEADROOM)
    pods = per_node - node_slot_bits
    nodes = 32 - _bits_for(sizing.nodes * HEADROOM + RESERVED_PER_SUBNET)
    service_bits = max(_bits_for(sizing.services * HEADROOM), MIN_SERVICE_BITS)
    if service_bits > MAX_SERVICE_BITS:
        raise PlanError(f"--services {sizing.services} with {HEADROOM}x headroom needs more than "
                        f"2^{MAX_SERVICE_BITS} addresses, the largest Service range Kubernetes accepts")
    services = 32 - service_bits
    if pods < sizing.supernet.prefixlen:
        raise PlanError(f"--nodes {sizing.nodes} x --pods-per-node {sizing.pods_per_node} with headroom "
                        f"needs a /{pods} of pods per cluster, more than the supernet {sizing.supernet}")
    total = sum(1 << (32 - p) for p in (pods, nodes, services))
    return _Layout(pods=pods, per_node=per_node, nodes=nodes, services=services,
                   block=32 - _bits_for(total))


def _place(start: int, prefixes: dict[str, int], width: int) -> dict[str, int]:
    """Start addresses of aligned blocks placed largest first from ``start``."""
    out: dict[str, int] = {}
    offset = start
    for name, prefix in sorted(prefixes.items(), key=lambda kv: kv[1]):
        out[name] = offset
        offset += 1 << (width - prefix)
    return out


def _ipv6_base(sizing: Sizing) -> ipaddress.IPv6Network:
    if sizing.ipv6 == "ula":
        return ula_prefix(sizing.seed)
    try:
        base = ipaddress.ip_network(str(sizing.ipv6), strict=True)
    except ValueError as exc:
        raise PlanError(f"--ipv6 takes 'ula' or an IPv6 prefix: {exc}") from None
    if not isinstance(base, ipaddress.IPv6Network):
        raise PlanError(f"--ipv6 {base} is not an IPv6 prefix")
    if base.prefixlen > 64:
        raise PlanError(f"--ipv6 {base} is smaller than a /64; nodes need a /64 each")
    _refuse_reserved(base, "--ipv6")
    return base


def allocate(sizing: Sizing) -> Plan:
    """A plan for ``sizing.clusters`` new clusters; raises PlanError when they do not fit."""
    layout = _ipv4_layout(sizing)
    supernet = sizing.supernet
    if layout.block < supernet.prefixlen:
        raise PlanError(f"one cluster needs a /{layout.block}, more than the supernet {supernet}; use a "
                        "larger --supernet or fewer --nodes, --pods-per-node or --services")
    capacity = 1 << (layout.block - supernet.prefixlen)
    if sizing.clusters > capacity:
        raise PlanError(f"{sizing.clusters} clusters of a /{layout.block} each do not fit in {supernet} "
                        f"(room for {capacity}); use a larger --supernet or fewer --nodes/--services")
    v4_prefixes = {"pods": layout.pods, "nodes": layout.nodes, "services": layout.services}
    ipv6 = _Ipv6Allocator(sizing, layout) if sizing.ipv6 else None

    clusters = []
    for index in range(sizing.clusters):
        block_start = int(supernet.network_address) + index * (1 << (32 - layout.block))
        starts = _place(block_start, v4_prefixes, 32)
        v4 = {role: ipaddress.IPv4Network((starts[role], v4_prefixes[role])) for role in v4_prefixes}
        v6 = ipv6.ranges(index, v4) if ipv6 else {}
        path = f"clusters[{index}]"
        dns_ip = v4["services"].network_address + DNS_SERVICE_OFFSET
        clusters.append(Cluster(
            name=f"{sizing.name_prefix}{index + 1}",
            origin=Origin(path),
            nodes=_ranges(path, "nodes", v4, v6),
            pods=_ranges(path, "pods", v4, v6),
            services=_ranges(path, "services", v4, v6),
            per_node_prefix=PerNodePrefix(ipv4=layout.per_node, ipv6=ipv6.per_node if ipv6 else None),
            dns=ClusterDns(service=Address(dns_ip, Origin(f"{path}.dns.service"))),
        ))
    return Plan(clusters=tuple(clusters), links=_links([c.name for c in clusters], sizing.topology))


def _ranges(path: str, role: str, v4: dict[str, ipaddress.IPv4Network],
            v6: dict[str, IPNetwork]) -> tuple[AddressRange, ...]:
    """One cluster's ranges for ``role``: its IPv4 range, then its IPv6 range if it has one."""
    nets: list[IPNetwork] = [v4[role]]
    if role in v6:
        nets.append(v6[role])
    return tuple(AddressRange(n, Origin(f"{path}.{role}[{i}]")) for i, n in enumerate(nets))


def _links(names: list[str], topology: str) -> tuple[Link, ...]:
    if len(names) < 2:
        return ()
    if topology == "hub":
        return (Link(between=tuple(names), origin=Origin("links[0]"), kind=LinkKind.HUB, name="hub",
                     pod_traffic=True),)
    if topology == "mesh":
        pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
        return tuple(Link(between=pair, origin=Origin(f"links[{i}]"), pod_traffic=True)
                     for i, pair in enumerate(pairs))
    raise PlanError(f"--topology takes mesh or hub, not {topology!r}")


class _Ipv6Allocator:
    """IPv6 ranges for each cluster, derived from IPv4 or allocated on their own."""

    def __init__(self, sizing: Sizing, layout: _Layout) -> None:
        self.base = _ipv6_base(sizing)
        self.derive = sizing.ipv6_from_ipv4
        self.supernet = sizing.supernet
        service_bits = max(32 - layout.services, MIN_V6_SERVICE_BITS)
        self.service_prefix = 128 - service_bits
        if self.derive:
            # IPv4 bits below the supernet follow the base prefix one for one.
            self.shift_prefix = self.base.prefixlen - self.supernet.prefixlen
            self.per_node = layout.per_node + self.shift_prefix
            if self.per_node > 64:
                raise PlanError(
                    f"deriving IPv6 from IPv4 puts the {32 - self.supernet.prefixlen} bits of {self.supernet} "
                    f"after {self.base}, which leaves each node a /{self.per_node}; use a shorter --ipv6 "
                    "prefix, a smaller --supernet or more --pods-per-node to get a /64 per node")
            self.prefixes = {"pods": layout.pods + self.shift_prefix,
                             "nodes": layout.nodes + self.shift_prefix}
        else:
            self.per_node = 64
            slot_bits = layout.per_node - layout.pods
            self.prefixes = {"pods": 64 - slot_bits, "nodes": 64, "services": self.service_prefix}
            total = sum(1 << (128 - p) for p in self.prefixes.values())
            self.block = 128 - _bits_for(total)
            capacity_bits = self.block - self.base.prefixlen
            if capacity_bits < 0 or sizing.clusters > 1 << capacity_bits:
                raise PlanError(f"{sizing.clusters} clusters of an IPv6 /{self.block} each do not fit in "
                                f"{self.base}; use a shorter --ipv6 prefix")

    def derived(self, network: ipaddress.IPv4Network) -> ipaddress.IPv6Network:
        """The IPv6 prefix standing for ``network`` (which lies inside the supernet)."""
        offset = int(network.network_address) - int(self.supernet.network_address)
        start = int(self.base.network_address) | offset << (128 - self.base.prefixlen - (32 - self.supernet.prefixlen))
        return ipaddress.IPv6Network((start, network.prefixlen + self.shift_prefix))

    def ranges(self, index: int, v4: dict[str, ipaddress.IPv4Network]) -> dict[str, IPNetwork]:
        if self.derive:
            out: dict[str, IPNetwork] = {role: self.derived(v4[role]) for role in ("pods", "nodes")}
            services = self.derived(v4["services"])
            # The derived block is larger than Kubernetes accepts for Services; use its start.
            out["services"] = ipaddress.IPv6Network((int(services.network_address),
                                                     max(services.prefixlen, self.service_prefix)))
            return out
        block_start = int(self.base.network_address) + index * (1 << (128 - self.block))
        starts = _place(block_start, self.prefixes, 128)
        return {role: ipaddress.IPv6Network((starts[role], prefix)) for role, prefix in self.prefixes.items()}

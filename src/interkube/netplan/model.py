"""An address plan as immutable values: clusters, external networks, links.

A plan says which address ranges each cluster uses and how the clusters are connected. It is
built by :mod:`interkube.netplan.parse` (from a file), :mod:`interkube.netplan.allocate` (for N
new clusters) or :mod:`interkube.netplan.discover` (from live clusters), judged by
:mod:`interkube.netplan.rules` and written back by :mod:`interkube.netplan.dump`.

Every range and address keeps the path inside the plan (``clusters[2].pods[0]``) and the line it
came from, so that a finding can send the reader to the place to fix.
"""

from __future__ import annotations

import enum
import ipaddress
import os
from dataclasses import dataclass, field

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Networking(enum.Enum):
    """How a cluster's pods are reached from outside the cluster (scenario: Addressing rules
    and VIP black holes, docs/scenarios.md)."""

    ROUTED = "routed"    # pod addresses are routable on the network between clusters
    OVERLAY = "overlay"  # pods live inside an encapsulated network; only nodes are addressable


class LinkKind(enum.Enum):
    """What joins clusters (and external networks) together."""

    PEERING = "peering"  # VPC peering, a cable between routers: exactly two members
    VPN = "vpn"          # a tunnel between two members
    HUB = "hub"          # a transit hub: every member reaches every other through it


class Role(enum.Enum):
    """What an address range is used for."""

    NODES = "nodes"
    PODS = "pods"
    SERVICES = "services"
    EXTERNAL = "external"
    RESERVED = "reserved"


def _shown(file: str) -> str:
    """A plan file as a compiler names it: relative to the working directory when it lies below it,
    so locations stay short enough to read in an 80-100 column terminal."""
    try:
        relative = os.path.relpath(file)
    except ValueError:  # another drive, or no working directory
        return file
    return file if relative.startswith("..") else relative


@dataclass(frozen=True)
class Origin:
    """Where a value came from: a path inside the plan and, when read from a file, the line."""

    path: str
    line: int | None = None

    def describe(self, file: str | None) -> str:
        """``plan.yaml:12 clusters[0].pods[0]``, or just the path when there is no file."""
        if file is None:
            return self.path
        file = _shown(file)
        where = f"{file}:{self.line}" if self.line else file
        return f"{where} {self.path}"


@dataclass(frozen=True)
class AddressRange:
    """One CIDR block of a cluster or an external network."""

    network: IPNetwork
    origin: Origin

    def __str__(self) -> str:
        return str(self.network)


@dataclass(frozen=True)
class Address:
    """One IP address (a DNS service IP or endpoint)."""

    ip: IPAddress
    origin: Origin

    def __str__(self) -> str:
        return str(self.ip)


@dataclass(frozen=True)
class ClusterDns:
    """The cluster DNS Service's VIP and the pod addresses behind it (what the scenario
    Forwarded DNS between clusters forwards to)."""

    service: Address | None = None
    endpoints: tuple[Address, ...] = ()


@dataclass(frozen=True)
class Forward:
    """This cluster forwards ``<namespace>.svc.cluster.local`` to cluster ``to``'s DNS."""

    namespace: str
    to: str
    origin: Origin


@dataclass(frozen=True)
class PerNodePrefix:
    """The prefix length each node gets out of the pod ranges (kube-controller-manager's
    ``--node-cidr-mask-size-ipv4/-ipv6``); ``None`` where unknown."""

    ipv4: int | None = None
    ipv6: int | None = None

    def for_version(self, version: int) -> int | None:
        return self.ipv4 if version == 4 else self.ipv6


@dataclass(frozen=True)
class Cluster:
    """One Kubernetes cluster of the plan."""

    name: str
    origin: Origin
    networking: Networking = Networking.ROUTED
    nodes: tuple[AddressRange, ...] = ()
    pods: tuple[AddressRange, ...] = ()
    services: tuple[AddressRange, ...] = ()
    per_node_prefix: PerNodePrefix = field(default_factory=PerNodePrefix)
    dns: ClusterDns | None = None
    namespaces: tuple[str, ...] = ()
    forward: tuple[Forward, ...] = ()
    # Set by discovery: the kubeconfig context the cluster was read from.
    context: str | None = None
    # Fields that were guessed rather than read (e.g. "services" inferred from ClusterIPs).
    inferred: tuple[str, ...] = ()

    def ranges(self, role: Role) -> tuple[AddressRange, ...]:
        if role is Role.NODES:
            return self.nodes
        if role is Role.PODS:
            return self.pods
        if role is Role.SERVICES:
            return self.services
        return ()

    def families(self) -> frozenset[int]:
        """IP versions of the cluster's node and pod ranges."""
        return frozenset(r.network.version for r in (*self.nodes, *self.pods))


@dataclass(frozen=True)
class ExternalNetwork:
    """An addressable network that is not a cluster: a VPC, on-prem, clients, a VPN pool."""

    name: str
    origin: Origin
    kind: str = "network"
    cidrs: tuple[AddressRange, ...] = ()


@dataclass(frozen=True)
class Link:
    """A connection between members (cluster or external network names)."""

    between: tuple[str, ...]
    origin: Origin
    kind: LinkKind = LinkKind.PEERING
    name: str | None = None
    # Addresses are translated on this link (NAT gateway, globalnet): not flat routing.
    nat: bool = False
    # The link is meant to carry pod-to-pod traffic.
    pod_traffic: bool = False
    # Each side proxies the other's Service VIPs (scenario: Discovery across clusters, VIP
    # proxying and the merged domain).
    service_proxy: bool = False

    def label(self) -> str:
        return self.name or f"{self.kind.value} {'-'.join(self.between)}"


@dataclass(frozen=True)
class Plan:
    """A whole address plan; ``source`` is the file it was read from, if any."""

    clusters: tuple[Cluster, ...] = ()
    external: tuple[ExternalNetwork, ...] = ()
    links: tuple[Link, ...] = ()
    source: str | None = None

    def cluster(self, name: str) -> Cluster:
        for cluster in self.clusters:
            if cluster.name == name:
                return cluster
        raise KeyError(name)

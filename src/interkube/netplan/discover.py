"""Live clusters to a :class:`~interkube.netplan.model.Plan`, read through their Kubernetes APIs.

For each kubeconfig context this reads what the scenario Forwarded DNS between clusters
(docs/scenarios.md) has the user dig out with kubectl:

* nodes' InternalIPs (as host addresses) and ``spec.podCIDRs``; where nodes have no pod CIDRs
  (the CNI hands out addresses from elsewhere, like the AWS VPC CNI) the pods' own IPs instead,
  flagged as inferred;
* the Service range from the ServiceCIDR API (networking.k8s.io v1, else v1beta1) where it is
  served and readable, else the smallest block holding every ClusterIP, flagged as inferred;
* the DNS Service (kube-system ``kube-dns`` or ``coredns``) and its ready endpoints;
* the namespaces.

Whether pods are routed or behind an overlay cannot be read from the API, so discovered clusters
are marked ``routed`` with ``networking`` in ``inferred``; the user edits the written plan.
Links between clusters are not discoverable either.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from interkube.errors import KubeconfigError, KubeError, KubeForbidden
from interkube.netplan.model import (
    Address,
    AddressRange,
    Cluster,
    ClusterDns,
    IPAddress,
    IPNetwork,
    Networking,
    Origin,
    PerNodePrefix,
    Plan,
)

DNS_SERVICE_NAMES = ("kube-dns", "coredns")
DNS_NAMESPACE = "kube-system"
_NOT_LABEL = re.compile(r"[^a-z0-9-]+")


def cluster_name(context: str, taken: set[str]) -> str:
    """A DNS-label name for a kubeconfig context (``arn:aws:eks:...:cluster/prod`` -> ``prod``)."""
    tail = re.split(r"[/:]", context)[-1] or context
    base = _NOT_LABEL.sub("-", tail.lower()).strip("-")[:63].strip("-") or "cluster"
    name, n = base, 2
    while name in taken:
        suffix = f"-{n}"
        name, n = base[:63 - len(suffix)] + suffix, n + 1
    taken.add(name)
    return name


def smallest_covering(addresses: Iterable[IPAddress]) -> list[IPNetwork]:
    """Per IP family, the smallest CIDR block holding every address."""
    items = list(addresses)
    out: list[IPNetwork] = []
    for version in (4, 6):
        values = [int(a) for a in items if a.version == version]
        if not values:
            continue
        low, high = min(values), max(values)
        bits = 32 if version == 4 else 128
        prefix = bits - (low ^ high).bit_length()
        network_type = ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network
        out.append(network_type((low >> (bits - prefix) << (bits - prefix), prefix)))
    return out


def collapse(networks: Iterable[IPNetwork]) -> list[IPNetwork]:
    """Adjacent and nested blocks merged, IPv4 first."""
    items = list(networks)
    v4 = [n for n in items if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in items if isinstance(n, ipaddress.IPv6Network)]
    return [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]


def _ranges(networks: Iterable[IPNetwork], path: str) -> tuple[AddressRange, ...]:
    return tuple(AddressRange(n, Origin(f"{path}[{i}]")) for i, n in enumerate(networks))


def _field(obj: Any, *names: str) -> Any:
    """``obj.a.b`` for typed lightkube objects, ``obj["a"]["b"]`` for generic ones; None if absent."""
    for name in names:
        if obj is None:
            return None
        obj = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
    return obj


class _ClusterReader:
    """Reads one context; every API problem becomes a KubeError naming cluster and context."""

    def __init__(self, client: Any, name: str, context: str, index: int,
                 dns_service: tuple[str, Sequence[str]] = (DNS_NAMESPACE, DNS_SERVICE_NAMES)) -> None:
        self.client = client
        self.name = name
        self.context = context
        self.path = f"clusters[{index}]"
        #: Where the cluster DNS Service is looked for: a namespace and names, first found wins.
        self.dns_namespace, self.dns_names = dns_service[0], tuple(dns_service[1])

    def error(self, exc: Exception, what: str) -> KubeError:
        from lightkube import ApiError

        if isinstance(exc, ApiError):
            code = exc.status.code
            message = f"{what}: HTTP {code} {exc.status.message or ''}".rstrip()
            if code in (401, 403):
                return KubeForbidden(message, cluster=self.name, context=self.context)
            return KubeError(message, cluster=self.name, context=self.context)
        return KubeError(f"{what}: {type(exc).__name__}: {exc}", cluster=self.name, context=self.context)

    async def list_objects(self, resource: Any, what: str, *, optional: bool = False,
                           **kwargs: Any) -> list[Any] | None:
        """Every object of ``resource``; with ``optional``, None when the API does not serve it
        (404) or RBAC does not let us list it (403)."""
        import httpx2
        from lightkube import ApiError

        try:
            return [obj async for obj in self.client.list(resource, **kwargs)]
        except ApiError as exc:
            if optional and exc.status.code in (403, 404):
                return None
            raise self.error(exc, what) from exc
        except httpx2.HTTPError as exc:
            raise self.error(exc, what) from exc

    async def read(self) -> Cluster:
        try:
            return await self._read()
        except ValueError as exc:  # an address or CIDR in an API object that does not parse
            raise KubeError(f"unexpected value from the API: {exc}", cluster=self.name,
                            context=self.context) from exc

    async def _read(self) -> Cluster:
        from lightkube.resources.core_v1 import Namespace, Node

        nodes = await self.list_objects(Node, "listing nodes") or []
        node_ips: list[IPNetwork] = []
        pod_cidrs: list[IPNetwork] = []
        for node in nodes:
            for address in _field(node, "status", "addresses") or ():
                if address.type == "InternalIP":
                    node_ips.append(ipaddress.ip_network(address.address))
            # podCIDRs came with dual-stack; older nodes only have podCIDR.
            spec_cidrs = _field(node, "spec", "podCIDRs") or [_field(node, "spec", "podCIDR")]
            pod_cidrs += (ipaddress.ip_network(c) for c in spec_cidrs if c)
        inferred: list[str] = ["networking"]
        if not pod_cidrs:
            pod_cidrs = await self.pod_ips()
            if pod_cidrs:
                inferred.append("pods")
        services, services_inferred = await self.service_ranges()
        if services_inferred:
            inferred.append("services")
        namespaces = await self.list_objects(Namespace, "listing namespaces") or []
        per_node = PerNodePrefix(
            ipv4=max((n.prefixlen for n in pod_cidrs if n.version == 4 and "pods" not in inferred), default=None),
            ipv6=max((n.prefixlen for n in pod_cidrs if n.version == 6 and "pods" not in inferred), default=None),
        )
        return Cluster(
            name=self.name,
            origin=Origin(self.path),
            networking=Networking.ROUTED,
            nodes=_ranges(collapse(node_ips), f"{self.path}.nodes"),
            pods=_ranges(collapse(pod_cidrs), f"{self.path}.pods"),
            services=_ranges(services, f"{self.path}.services"),
            per_node_prefix=per_node,
            dns=await self.dns(),
            namespaces=tuple(sorted(ns.metadata.name for ns in namespaces)),
            context=self.context,
            inferred=tuple(inferred),
        )

    async def pod_ips(self) -> list[IPNetwork]:
        from lightkube.resources.core_v1 import Pod

        out: list[IPNetwork] = []
        for pod in await self.list_objects(Pod, "listing pods", namespace="*") or []:
            if _field(pod, "spec", "hostNetwork"):
                continue  # host-network pods carry their node's address
            ips = [p.ip for p in _field(pod, "status", "podIPs") or ()] or \
                [ip for ip in [_field(pod, "status", "podIP")] if ip]
            out += (ipaddress.ip_network(ip) for ip in ips)
        return out

    async def service_ranges(self) -> tuple[list[IPNetwork], bool]:
        """The Service CIDRs and whether they were inferred from ClusterIPs."""
        from lightkube.generic_resource import create_global_resource
        from lightkube.resources.networking_v1 import ServiceCIDR

        beta = create_global_resource("networking.k8s.io", "v1beta1", "ServiceCIDR", "servicecidrs")
        for resource in (ServiceCIDR, beta):
            objects = await self.list_objects(resource, "listing ServiceCIDRs", optional=True)
            if objects:
                cidrs = [ipaddress.ip_network(c) for obj in objects for c in _field(obj, "spec", "cidrs") or ()]
                if cidrs:
                    return collapse(cidrs), False
        return await self.infer_service_ranges(), True

    async def infer_service_ranges(self) -> list[IPNetwork]:
        from lightkube.resources.core_v1 import Service

        ips: list[IPAddress] = []
        for service in await self.list_objects(Service, "listing services", namespace="*") or []:
            for ip in _field(service, "spec", "clusterIPs") or [_field(service, "spec", "clusterIP")]:
                if ip and ip != "None":
                    address = ipaddress.ip_address(ip)
                    ips.append(address)
                    if service.metadata.name == "kubernetes" and service.metadata.namespace == "default":
                        # The API server's own Service takes the first address after the
                        # network address, which pins where the range starts.
                        ips.append(address - 1)
        return smallest_covering(ips)

    async def dns(self) -> ClusterDns | None:
        from lightkube.resources.core_v1 import Service
        from lightkube.resources.discovery_v1 import EndpointSlice

        services = {s.metadata.name: s for s in await self.list_objects(Service, "listing DNS services",
                                                                         namespace=self.dns_namespace) or []}
        name = next((n for n in self.dns_names if n in services), None)
        if name is None:
            return None
        cluster_ip = _field(services[name], "spec", "clusterIP")
        service = None
        if cluster_ip and cluster_ip != "None":
            service = Address(ipaddress.ip_address(cluster_ip), Origin(f"{self.path}.dns.service"))
        slices = await self.list_objects(EndpointSlice, "listing DNS endpoints", namespace=self.dns_namespace,
                                         labels={"kubernetes.io/service-name": name}) or []
        ips: list[IPAddress] = []
        for endpoint_slice in slices:
            if endpoint_slice.addressType not in ("IPv4", "IPv6"):
                continue
            for endpoint in endpoint_slice.endpoints or ():
                if _field(endpoint, "conditions", "ready") is False:
                    continue
                ips += (ipaddress.ip_address(a) for a in endpoint.addresses)
        endpoints = tuple(Address(ip, Origin(f"{self.path}.dns.endpoints[{i}]"))
                          for i, ip in enumerate(sorted(set(ips), key=lambda a: (a.version, int(a)))))
        return ClusterDns(service=service, endpoints=endpoints)


async def read_cluster(client: Any, name: str, context: str, *,
                       dns_service: tuple[str, Sequence[str]] = (DNS_NAMESPACE, DNS_SERVICE_NAMES)) -> Cluster:
    """One cluster read through a lightkube ``AsyncClient`` (what ``interkube doctor`` compares
    with the plan), its DNS Service looked for in ``dns_service``'s namespace by its names."""
    return await _ClusterReader(client, name, context, 0, dns_service).read()


async def discover(kubeconfig: str | Path, contexts: Sequence[str], *, trust_env: bool = True,
                   timeout: float = 10.0) -> Plan:
    """A plan of the clusters behind ``contexts``, read concurrently.

    ``trust_env`` lets HTTP(S)_PROXY and friends apply, as kubectl does.
    """
    import httpx2
    from lightkube import AsyncClient
    from lightkube.config.kubeconfig import KubeConfig
    from lightkube.core.exceptions import ConfigError

    if not contexts:
        raise KubeconfigError("name at least one --context")
    if len(set(contexts)) != len(contexts):
        raise KubeconfigError("a --context is given twice")
    try:
        config = KubeConfig.from_file(kubeconfig)
    except (ConfigError, OSError, ValueError, KeyError, TypeError) as exc:
        raise KubeconfigError(f"cannot use kubeconfig {kubeconfig}: {exc}") from exc
    taken: set[str] = set()
    readers: list[tuple[_ClusterReader, Any]] = []
    for index, context in enumerate(contexts):
        name = cluster_name(context, taken)
        try:
            client = AsyncClient(config.get(context), trust_env=trust_env, timeout=httpx2.Timeout(timeout))
        except (ConfigError, KeyError, OSError, ValueError) as exc:
            raise KubeconfigError(f"cannot use context: {exc}", cluster=name, context=context) from exc
        readers.append((_ClusterReader(client, name, context, index), client))
    try:
        clusters = await asyncio.gather(*(reader.read() for reader, _ in readers))
    finally:
        for _, client in readers:
            await client.close()
    return Plan(clusters=tuple(clusters))

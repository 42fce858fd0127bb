"""Two clusters for the kubernetai tests: east (this server's own) and west.

Both have namespace ``shop``; some Services are in one cluster only, ``web`` in both (with other
addresses), ``idle`` is a ClusterIP Service without endpoints in east and headless with a ready
endpoint in west (kubernetai's README: ``ignore empty_service`` in the local stanza sends such a
name to the remote one). East also has namespace ``default``.
"""

from __future__ import annotations

from typing import Any

from testkit.fakekube import endpoint_slice, service

Obj = dict[str, Any]


def east_objects() -> list[Obj]:
    return [
        service("default", "kubernetes", cluster_ips=["10.96.0.1"], ports=[("https", 443, "TCP")]),
        service("shop", "web", cluster_ips=["10.96.1.10"]),
        endpoint_slice("shop", "web-e", "web", [{"ip": "10.244.1.5"}]),
        service("shop", "cart", cluster_ips=["10.96.1.20"]),
        endpoint_slice("shop", "cart-e", "cart", [{"ip": "10.244.1.20"}]),
        service("shop", "idle", cluster_ips=["10.96.1.30"]),
    ]


def west_objects() -> list[Obj]:
    return [
        service("shop", "web", cluster_ips=["10.96.2.10"]),
        endpoint_slice("shop", "web-w", "web", [{"ip": "10.245.1.5"}]),
        service("shop", "pay", cluster_ips=["10.96.2.40"]),
        endpoint_slice("shop", "pay-w", "pay", [{"ip": "10.245.1.40"}]),
        service("shop", "idle", headless=True),
        endpoint_slice("shop", "idle-w", "idle", [{"ip": "10.245.1.30", "hostname": "idle-0"}]),
    ]


MCS_API = "multicluster.x-k8s.io/v1alpha1"


def mcs_objects() -> list[Obj]:
    """Namespace ``mcs`` of east: exported Services (ClusterSetIP and headless) with their
    ServiceImports as an MCS controller writes them, one exported without a ServiceImport, one
    not exported."""

    def export(name: str) -> Obj:
        return {"apiVersion": MCS_API, "kind": "ServiceExport", "metadata": {"name": name, "namespace": "mcs"}}

    def imported(name: str, type_: str, ips: list[str]) -> Obj:
        spec: Obj = {"type": type_, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
        if ips:
            spec["ips"] = ips
        return {"apiVersion": MCS_API, "kind": "ServiceImport", "metadata": {"name": name, "namespace": "mcs"},
                "spec": spec, "status": {"clusters": [{"cluster": "east"}]}}

    return [
        service("mcs", "web", cluster_ips=["10.96.5.10"]),
        endpoint_slice("mcs", "web-e", "web", [{"ip": "10.244.5.5"}], ports=[("http", 8080, "TCP")]),
        export("web"), imported("web", "ClusterSetIP", ["10.97.0.10"]),
        service("mcs", "hl", headless=True),
        endpoint_slice("mcs", "hl-e", "hl", [{"ip": "10.244.5.20", "hostname": "pet-0"}, {"ip": "10.244.5.21"}]),
        export("hl"), imported("hl", "Headless", []),
        service("mcs", "unimported", cluster_ips=["10.96.5.30"]),
        endpoint_slice("mcs", "unimported-e", "unimported", [{"ip": "10.244.5.30"}]),
        export("unimported"),
        service("mcs", "private", cluster_ips=["10.96.5.40"]),
        endpoint_slice("mcs", "private-e", "private", [{"ip": "10.244.5.40"}]),
    ]

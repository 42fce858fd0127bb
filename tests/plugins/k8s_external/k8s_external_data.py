"""One cluster for the k8s_external tests: Services with external addresses of every kind.

Namespace ``shop``: ``web``, a LoadBalancer with ingress IPs of both families; ``host``, one
known by its ingress hostname; ``ext``, a ClusterIP Service with ``externalIPs``; ``db``, headless
with a named endpoint, a pod-named one and a not-ready one; ``hlext``, headless with
``externalIPs``; ``plain``, ClusterIP with an endpoint and no external address. ``kube-system``
has the cluster DNS as a LoadBalancer (for the name server's own addresses). ``empty`` is a
namespace with nothing in it.
"""

from __future__ import annotations

from typing import Any

from testkit.fakekube import endpoint_slice, service

Obj = dict[str, Any]


def namespace(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def load_balancer(ns: str, name: str, ingress: list[Obj], **kw: Any) -> Obj:
    svc = service(ns, name, **kw)
    svc["spec"]["type"] = "LoadBalancer"
    svc["status"] = {"loadBalancer": {"ingress": ingress}}
    return svc


def with_external_ips(svc: Obj, *ips: str) -> Obj:
    svc["spec"]["externalIPs"] = list(ips)
    return svc


def objects() -> list[Obj]:
    return [
        namespace("shop"), namespace("empty"), namespace("kube-system"),
        load_balancer("shop", "web", [{"ip": "192.0.2.10"}, {"ip": "2001:db8::10"}],
                      cluster_ips=["10.96.1.10"], ports=[("http", 80, "TCP"), ("https", 443, "TCP")]),
        load_balancer("shop", "host", [{"hostname": "LB-1.elb.example.com"}], cluster_ips=["10.96.1.11"]),
        with_external_ips(service("shop", "ext", cluster_ips=["10.96.1.12"], ports=[("dns", 53, "UDP")]),
                          "192.0.2.11"),
        service("shop", "db", headless=True, ports=[("pg", 5432, "TCP")]),
        endpoint_slice("shop", "db-a", "db", [{"ip": "10.244.1.5", "hostname": "db-0"},
                                              {"ip": "10.244.1.6", "pod": "db-pod-1"},
                                              {"ip": "10.244.1.7", "hostname": "db-2", "ready": False}],
                       ports=[("pg", 5432, "TCP")]),
        with_external_ips(service("shop", "hlext", headless=True), "192.0.2.12"),
        service("shop", "plain", cluster_ips=["10.96.1.13"]),
        endpoint_slice("shop", "plain-a", "plain", [{"ip": "10.244.2.5", "hostname": "web-0"}]),
        load_balancer("kube-system", "kube-dns", [{"ip": "192.0.2.53"}], cluster_ips=["10.96.0.10"],
                      ports=[("dns", 53, "UDP")]),
        endpoint_slice("kube-system", "kube-dns-a", "kube-dns", [{"ip": "10.244.0.53"}], ports=[("dns", 53, "UDP")]),
    ]

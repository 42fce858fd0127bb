"""The cluster of scenario S1-k8s: 10,000 Services by default (``--k8s-services``).

Two forms of the same data: a snapshot file written the way
``kubectl get services,endpointslices -A -o yaml`` writes it (a ``kind: List`` with all the
Services, then all the EndpointSlices, keys in alphabetical order) for interkube's
``kubernetes { snapshot FILE }``; and the same objects created in a real kube-apiserver (the
``testkit.kubeapi`` fixture) for CoreDNS's kubernetes plugin.
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interkube.pkg.atomicfile import replacing

#: Where the ClusterIPs come from: the /16 of the kubeapi fixture's API server (SERVICE_CIDRS[0]
#: there) holds those of the first 65,280 Services, so that the same ClusterIPs can be created in
#: it; larger clusters (snapshots only) go on into the rest of Kubernetes' default /12.
SERVICE_NET = ipaddress.ip_network("10.96.0.0/12")
API_SERVICE_NET = ipaddress.ip_network("10.96.0.0/16")
POD_NET = ipaddress.ip_network("10.244.0.0/14")
DOMAIN = "cluster.local."
TTL = 5  # the kubernetes plugin's default TTL (CoreDNS and interkube)
CREATED = "2026-01-01T00:00:00Z"


@dataclass(frozen=True)
class K8sService:
    namespace: str
    name: str
    cluster_ip: str
    pod_ips: tuple[str, ...]

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.namespace}.svc.{DOMAIN}"


#: Services in S1-k8s's cluster unless --k8s-services says otherwise.
DEFAULT_SERVICES = 10_000


def services(count: int = DEFAULT_SERVICES, per_namespace: int = 100) -> list[K8sService]:
    """``count`` ClusterIP Services in namespaces of ``per_namespace``, plus the two every
    cluster has (default/kubernetes, kube-system/kube-dns). Deterministic."""
    out = [K8sService("default", "kubernetes", str(SERVICE_NET[1]), ()),
           K8sService("kube-system", "kube-dns", str(SERVICE_NET[10]), ("10.244.0.2", "10.244.0.3"))]
    for i in range(count):
        ns, k = divmod(i, per_namespace)
        ip = SERVICE_NET[256 + i]  # 10.96.1.0 onwards: clear of .1 and .10 above
        pods = (str(POD_NET[1024 + 2 * i]), str(POD_NET[1025 + 2 * i]))
        out.append(K8sService(f"bench-{ns:03d}", f"svc-{k:03d}", str(ip), pods))
    return out


def _uid(*parts: str) -> str:
    return str(uuid.UUID(bytes=hashlib.md5("/".join(parts).encode()).digest()))


def _suffix(name: str) -> str:
    """The 5-character random suffix the EndpointSlice controller adds, made deterministic."""
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    h = int(hashlib.md5(name.encode()).hexdigest(), 16)
    return "".join(alphabet[(h >> (5 * i)) % len(alphabet)] for i in range(5))


def _service_yaml(s: K8sService, rv: int) -> str:
    selector = "" if not s.pod_ips else f"    selector:\n      app: {s.name}\n"
    return (
        "- apiVersion: v1\n"
        "  kind: Service\n"
        "  metadata:\n"
        f"    creationTimestamp: \"{CREATED}\"\n"
        "    labels:\n"
        f"      app: {s.name}\n"
        f"    name: {s.name}\n"
        f"    namespace: {s.namespace}\n"
        f"    resourceVersion: \"{rv}\"\n"
        f"    uid: {_uid('svc', s.namespace, s.name)}\n"
        "  spec:\n"
        f"    clusterIP: {s.cluster_ip}\n"
        "    clusterIPs:\n"
        f"    - {s.cluster_ip}\n"
        "    internalTrafficPolicy: Cluster\n"
        "    ipFamilies:\n"
        "    - IPv4\n"
        "    ipFamilyPolicy: SingleStack\n"
        "    ports:\n"
        "    - name: http\n"
        "      port: 80\n"
        "      protocol: TCP\n"
        "      targetPort: 8080\n"
        f"{selector}"
        "    sessionAffinity: None\n"
        "    type: ClusterIP\n"
        "  status:\n"
        "    loadBalancer: {}\n"
    )


def _slice_yaml(s: K8sService, rv: int) -> str:
    slice_name = f"{s.name}-{_suffix(s.namespace + '/' + s.name)}"
    eps = "".join(
        "  - addresses:\n"
        f"    - {ip}\n"
        "    conditions:\n"
        "      ready: true\n"
        "      serving: true\n"
        "      terminating: false\n"
        f"    nodeName: node-{n % 8}\n"
        "    targetRef:\n"
        "      kind: Pod\n"
        f"      name: {s.name}-5d8c7b9f4-{_suffix(ip)}\n"
        f"      namespace: {s.namespace}\n"
        f"      uid: {_uid('pod', ip)}\n"
        for n, ip in enumerate(s.pod_ips))
    return (
        "- addressType: IPv4\n"
        "  apiVersion: discovery.k8s.io/v1\n"
        "  endpoints:\n"
        f"{eps}"
        "  kind: EndpointSlice\n"
        "  metadata:\n"
        "    annotations:\n"
        f"      endpoints.kubernetes.io/last-change-trigger-time: \"{CREATED}\"\n"
        f"    creationTimestamp: \"{CREATED}\"\n"
        f"    generateName: {s.name}-\n"
        "    generation: 1\n"
        "    labels:\n"
        "      endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io\n"
        f"      kubernetes.io/service-name: {s.name}\n"
        f"    name: {slice_name}\n"
        f"    namespace: {s.namespace}\n"
        "    ownerReferences:\n"
        "    - apiVersion: v1\n"
        "      blockOwnerDeletion: true\n"
        "      controller: true\n"
        "      kind: Service\n"
        f"      name: {s.name}\n"
        f"      uid: {_uid('svc', s.namespace, s.name)}\n"
        f"    resourceVersion: \"{rv}\"\n"
        f"    uid: {_uid('slice', s.namespace, slice_name)}\n"
        "  ports:\n"
        "  - name: http\n"
        "    port: 8080\n"
        "    protocol: TCP\n"
    )


def write_snapshot(path: Path, svcs: list[K8sService]) -> Path:
    """Write the snapshot; kubectl lists one resource type after the other."""
    def chunks() -> Iterator[str]:
        yield "apiVersion: v1\nitems:\n"
        rv = 1000
        for s in svcs:
            rv += 1
            yield _service_yaml(s, rv)
        for s in svcs:
            if s.pod_ips:
                rv += 1
                yield _slice_yaml(s, rv)
        yield "kind: List\nmetadata:\n  resourceVersion: \"\"\n"

    # Written beside and renamed into place: a server polling the file never reads half of it.
    with replacing(path, fsync=False) as f:
        f.writelines(chunks())
    return path


# --- the same objects in a real API server --------------------------------------------------


def _service_obj(s: K8sService) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": "ClusterIP", "clusterIP": s.cluster_ip,
                            "ports": [{"name": "http", "port": 80, "protocol": "TCP",
                                       "targetPort": 8080}]}
    if s.pod_ips:
        spec["selector"] = {"app": s.name}
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": s.name, "namespace": s.namespace, "labels": {"app": s.name}},
            "spec": spec}


def _slice_obj(s: K8sService) -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{s.name}-{_suffix(s.namespace + '/' + s.name)}",
                         "namespace": s.namespace,
                         "labels": {"kubernetes.io/service-name": s.name,
                                    "endpointslice.kubernetes.io/managed-by": "interkube-bench"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in s.pod_ips],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}


def beyond_api_server(svcs: list[K8sService]) -> str | None:
    """Why the API server cannot hold ``svcs`` (ClusterIPs outside its service range), or None."""
    outside = sum(ipaddress.ip_address(s.cluster_ip) not in API_SERVICE_NET for s in svcs)
    if outside:
        return (f"{outside:,} Services have ClusterIPs outside the API server's service range "
                f"{API_SERVICE_NET} (at most 65,280 Services fit it)")
    return None


def populate(api: Any, svcs: list[K8sService], workers: int = 8) -> float:
    """Create the namespaces, Services and EndpointSlices in ``api`` (a KubeAPI); returns the
    seconds it took. Objects that exist already (409) are left as they are."""
    problem = beyond_api_server(svcs)
    if problem:
        raise RuntimeError(problem)
    http = api.http()
    started = time.monotonic()

    def post(path: str, obj: dict[str, Any]) -> None:
        resp = http.post(path, json=obj, timeout=60)
        if resp.status_code not in (200, 201, 409):
            raise RuntimeError(f"POST {path}: HTTP {resp.status_code}: {resp.text[:300]}")

    namespaces = sorted({s.namespace for s in svcs} - {"default", "kube-system"})
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda ns: post("/api/v1/namespaces", {
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}), namespaces))
        todo = [s for s in svcs if s.name != "kubernetes"]  # the API server made that one
        list(pool.map(lambda s: post(f"/api/v1/namespaces/{s.namespace}/services",
                                     _service_obj(s)), todo))
        list(pool.map(lambda s: post(
            f"/apis/discovery.k8s.io/v1/namespaces/{s.namespace}/endpointslices", _slice_obj(s)),
            [s for s in todo if s.pod_ips]))
    return time.monotonic() - started

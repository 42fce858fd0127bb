"""What the lab's DNS servers serve: a snapshot of each cluster's objects and a Corefile each.

Every cluster's snapshot (the *kubernetes* plugin's file format: a ``kind: List`` of
Namespaces, Services, EndpointSlices and Pods, here as JSON) holds the Services the lab runs:
``kube-dns`` in kube-system, the headless ``cb-example-srv`` of a three-pod StatefulSet and the
ClusterIP Service ``web`` in ``shop``. Each cluster's DNS server reads every cluster's snapshot
(they are files in the lab's state folder, as `kubectl get -o json` would write them), so the
discovery zones need no traffic between clusters; forwarded namespaces do cross the links.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any

from interkube.lab.layout import (
    DNS_PORT,
    DOT_PORT,
    PUBLIC_ZONE,
    STATEFUL_SERVICE,
    STATEFUL_SET,
    ClusterLab,
    Layout,
    Pod,
    Service,
)

CLUSTER_DOMAIN = "cluster.local"


def _meta(name: str, namespace: str | None, uid: int) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "resourceVersion": str(uid), "uid": f"00000000-0000-0000-0000-{uid:012d}"}
    if namespace:
        meta["namespace"] = namespace
    return meta


def snapshot(cluster: ClusterLab) -> dict[str, Any]:
    """The cluster's objects as one Kubernetes List."""
    items: list[dict[str, Any]] = []
    uid = iter(range(1, 1_000_000))
    namespaces = sorted({"default", "kube-system", *(s.namespace for s in cluster.services),
                         *(p.namespace for p in cluster.pods.values())})
    for ns in namespaces:
        items.append({"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(ns, None, next(uid)),
                      "status": {"phase": "Active"}})
    for pod in cluster.pods.values():
        items.append(_pod(pod, next(uid)))
    for svc in cluster.services:
        items += _service(cluster, svc, uid)
    return {"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}}


def _family(address: str) -> str:
    return "IPv4" if ipaddress.ip_address(address).version == 4 else "IPv6"


def _pod(pod: Pod, uid: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": pod.role, "image": "lab"}], "nodeName": f"node{pod.node}"}
    if pod.hostname:
        spec.update(hostname=pod.hostname, subdomain="cb-example-srv")
    return {"apiVersion": "v1", "kind": "Pod", "metadata": _meta(pod.name, pod.namespace, uid), "spec": spec,
            "status": {"phase": "Running", "podIP": pod.addresses[0], "podIPs": [{"ip": a} for a in pod.addresses],
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def _service(cluster: ClusterLab, svc: Service, uid: Any) -> list[dict[str, Any]]:
    families = sorted({_family(a) for a in (svc.cluster_ips or svc.addresses)}) or ["IPv4"]
    ports = [{"name": svc.port_name if len(svc.protocols) == 1 else f"{svc.port_name}-{p.lower()}",
              "port": svc.port, "protocol": p, "targetPort": svc.port} for p in svc.protocols]
    if svc.name == "kube-dns":
        ports = [{"name": "dns" if p == "UDP" else "dns-tcp", "port": svc.port, "protocol": p, "targetPort": svc.port}
                 for p in svc.protocols]
    spec: dict[str, Any] = {"type": "ClusterIP", "ports": ports, "ipFamilies": families,
                            "ipFamilyPolicy": "PreferDualStack" if len(families) > 1 else "SingleStack",
                            "clusterIP": svc.cluster_ips[0] if svc.cluster_ips else "None",
                            "clusterIPs": svc.cluster_ips or ["None"], "sessionAffinity": "None"}
    out: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Service", "spec": spec, "status": {"loadBalancer": {}},
                                  "metadata": _meta(svc.name, svc.namespace, next(uid))}]
    slice_ports = [{"name": p["name"], "port": svc.port, "protocol": p["protocol"]} for p in ports]
    for family in families:
        endpoints = []
        for i, address in enumerate(a for a in svc.addresses if _family(a) == family):
            pod = cluster.pods[svc.pods[i]] if i < len(svc.pods) else None
            endpoint: dict[str, Any] = {"addresses": [address],
                                        "conditions": {"ready": True, "serving": True, "terminating": False}}
            if pod:
                endpoint.update(nodeName=f"node{pod.node}",
                                targetRef={"kind": "Pod", "name": pod.name, "namespace": pod.namespace})
                if pod.hostname:
                    endpoint["hostname"] = pod.hostname
            endpoints.append(endpoint)
        meta = _meta(f"{svc.name}-{family.lower()}", svc.namespace, next(uid))
        meta["labels"] = {"kubernetes.io/service-name": svc.name,
                          "endpointslice.kubernetes.io/managed-by": "interkube-lab"}
        out.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": family,
                    "metadata": meta, "endpoints": endpoints, "ports": slice_ports})
    return out


def _hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def corefile(layout: Layout, name: str, data_dir: Path, *, dot: bool = False, certs: Path | None = None) -> str:
    """The Corefile of cluster ``name``'s DNS server.

    ``cluster.local`` from its own snapshot; ``cluster.<each>`` and ``cluster.all`` from every
    cluster's (scenario: Discovery across clusters); each forwarded namespace to the target
    cluster's DNS address, over DNS over TLS with mutual TLS when ``dot``; and, when ``dot`` and
    another cluster forwards here, a ``tls://`` block on port 853 requiring client
    certificates of the lab's CA.
    """
    me = layout.clusters[name]
    own = f"{data_dir / name}.json"
    local_ranges = ["127.0.0.0/8", "::1", *me.node_ranges, *me.pod_ranges]
    acl = ["    acl {", f"        allow net {' '.join(local_ranges)}", "        block", "    }"]
    lines = [f"# interkube lab {layout.lab_id}: the DNS server of cluster {name}.",
             f"# {PUBLIC_ZONE} plays the public DNS (the same file in every cluster); splitdns answers",
             "# this cluster's own members' public names with their pods' addresses.",
             f"{CLUSTER_DOMAIN}:{DNS_PORT} {PUBLIC_ZONE}:{DNS_PORT} {{", "    errors",
             f"    kubernetes {CLUSTER_DOMAIN} {{", f"        snapshot {own}", "    }"]
    if me.public:
        public_name = re.escape(f"{name}.{PUBLIC_ZONE}.")
        lines += [f"    splitdns {PUBLIC_ZONE} {{",
                  f"        pod ^{STATEFUL_SET}-([0-9]+)\\.{public_name}$ "
                  f"{STATEFUL_SET}-{{1}}.{STATEFUL_SERVICE}.{me.stateful_namespace}.svc.{CLUSTER_DOMAIN}.",
                  "    }"]
    lines += [f"    file {data_dir / PUBLIC_ZONE}.zone {PUBLIC_ZONE}", "}", ""]
    names = list(layout.clusters)
    zones = " ".join(f"cluster.{c}:{DNS_PORT}" for c in [*names, "all"])
    lines += [zones + " {", "    errors"]
    for c in names:
        lines += [f"    kubernetes cluster.{c} {{", f"        snapshot {data_dir / c}.json", "    }"]
    lines += ["    clusterset cluster.all {", f"        clusters {' '.join(names)}", f"        local {name}", "    }",
              "}", ""]
    for namespace, target in me.forward.items():
        there = layout.clusters[target]
        lines += [f"{namespace}.svc.{CLUSTER_DOMAIN}:{DNS_PORT} {{", *acl, "    errors"]
        if dot:
            assert certs is not None
            upstreams = " ".join(f"tls://{_hostport(a, DOT_PORT)}" for a in there.dns_addresses)
            lines += [f"    forward . {upstreams} {{",
                      f"        tls {certs / name / 'client.crt'} {certs / name / 'client.key'} {certs / 'ca.crt'}",
                      f"        tls_servername dns.{target}", "    }"]
        else:
            lines.append(f"    forward . {' '.join(_hostport(a, DNS_PORT) for a in there.dns_addresses)}")
        lines += ["}", ""]
    askers = [c for c in layout.clusters.values() if name in c.forward.values()]
    if dot and askers:
        assert certs is not None
        allowed = ["127.0.0.0/8", "::1", *(r for c in askers for r in (*c.node_ranges, *c.pod_ranges))]
        lines += [f"tls://{CLUSTER_DOMAIN}:{DOT_PORT} {{",
                  f"    tls {certs / name / 'server.crt'} {certs / name / 'server.key'} {certs / 'ca.crt'} {{",
                  "        client_auth require_and_verify", "    }",
                  "    acl {", f"        allow net {' '.join(allowed)}", "        block", "    }",
                  "    errors", f"    kubernetes {CLUSTER_DOMAIN} {{", f"        snapshot {own}", "    }", "}", ""]
    return "\n".join(lines)


def public_zone(layout: Layout) -> str:
    """The "public" DNS of the split DNS scenario: every routed cluster's StatefulSet members as
    ``cb-example-N.<cluster>.db.example``, at their public (load balancer) addresses."""
    lines = [f"$ORIGIN {PUBLIC_ZONE}.", "$TTL 30",
             f"@ IN SOA ns.{PUBLIC_ZONE}. hostmaster.{PUBLIC_ZONE}. 1 7200 1800 86400 30",
             f"@ IN NS ns.{PUBLIC_ZONE}."]
    for name, cluster in layout.clusters.items():
        for pod, address in cluster.public.items():
            rtype = "A" if ipaddress.ip_address(address).version == 4 else "AAAA"
            lines.append(f"{pod}.{name} IN {rtype} {address}")
    return "\n".join(lines) + "\n"


def write_certificates(layout: Layout, directory: Path) -> None:
    """A lab CA, and for each cluster a DoT server certificate (``dns.<cluster>`` and the
    namespaces forwarded to it) and a client certificate, as `interkube certs` writes them."""
    from interkube.tlsutil import certs

    files = certs.Layout(directory)
    ca = certs.ensure_ca(files, common_name=f"interkube lab {layout.lab_id} CA")
    for name in layout.clusters:
        namespaces = sorted({ns for c in layout.clusters.values() for ns, to in c.forward.items() if to == name})
        certs.ensure_cluster(files, ca, certs.cluster_names(name, namespaces=namespaces))


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


def proxy_config(layout: Layout, name: str, data_dir: Path, http: tuple[str, int]) -> str:
    """`interkube proxy`'s configuration for cluster ``name``'s router: the Service ranges of the
    clusters it proxies (links with ``service_proxy``) from their snapshots; its own Service
    ranges as ``local``, so that an overlap is refused (R6) rather than built."""
    me = layout.clusters[name]
    lines = [f"# interkube lab {layout.lab_id}: the Service proxy on the router of cluster {name}.", "proxy {"]
    for other in me.proxied:
        there = layout.clusters[other]
        lines += [f"    cluster {other} {{", f"        snapshot {data_dir / other}.json"]
        if there.service_ranges:
            lines.append(f"        service_cidr {' '.join(there.service_ranges)}")
        lines.append("    }")
    if me.service_ranges:
        lines.append(f"    local {' '.join(me.service_ranges)}")
    lines += [f"    http {_hostport(*http)}", "}", ""]
    return "\n".join(lines)

"""Three clusters for the clusterset tests: east (the local one), west and central.eu (a cluster
ID with a dot, as the MCS KEP allows), written as kubectl-style snapshot files.

Namespace `shop` holds the merge cases of the `cluster.all` zone; namespace `mcs` the MCS
specification's cases (exports, imports, ClusterSetIP, headless).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from testkit.fakekube import endpoint_slice, service

Obj = dict[str, Any]
CLUSTERS = ("east", "west", "central.eu")
#: The file (and kubernetes zone) of each cluster: cluster.east, cluster.west, cluster.central.
SHORT = {"east": "east", "west": "west", "central.eu": "central"}
MCS_API = "multicluster.x-k8s.io/v1alpha1"


def export(namespace: str, name: str) -> Obj:
    return {"apiVersion": MCS_API, "kind": "ServiceExport", "metadata": {"name": name, "namespace": namespace}}


def service_import(namespace: str, name: str, *, type_: str = "ClusterSetIP", ips: list[str] | None = None,
                   ports: list[tuple[str, int, str]] = (("http", 80, "TCP"),),  # type: ignore[assignment]
                   clusters: list[str] = (), v1alpha2: bool = False) -> Obj:  # type: ignore[assignment]
    """A ServiceImport as an MCS controller writes it (v1alpha2 keeps the fields at the top)."""
    body: Obj = {"type": type_, "ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports]}
    if ips:
        body["ips"] = list(ips)
    status = [{"cluster": c} for c in clusters]
    meta = {"name": name, "namespace": namespace}
    if v1alpha2:
        return {"apiVersion": "multicluster.x-k8s.io/v1alpha2", "kind": "ServiceImport", "metadata": meta,
                **body, "clusters": status}
    return {"apiVersion": MCS_API, "kind": "ServiceImport", "metadata": meta, "spec": body,
            "status": {"clusters": status}}


def shop(cluster: str) -> list[Obj]:
    """The `cluster.all` cases: what each cluster holds in namespace shop."""
    objs: dict[str, list[Obj]] = {
        "east": [
            # web: everywhere, dual-stack ClusterIP here; local-first answers this alone.
            service("shop", "web", cluster_ips=["10.96.1.10", "fd00:96:1::10"], ports=[("http", 80, "TCP")]),
            endpoint_slice("shop", "web-e", "web", [{"ip": "10.244.1.5"}], ports=[("http", 8080, "TCP")]),
            # idle: a ClusterIP Service with no endpoints in east and west.
            service("shop", "idle", cluster_ips=["10.96.1.30"]),
            # db: headless, a pet with the same hostname in east and west.
            service("shop", "db", headless=True, ports=[("pg", 5432, "TCP")]),
            endpoint_slice("shop", "db-e", "db", [{"ip": "10.244.1.40", "hostname": "db-0"}],
                           ports=[("pg", 5432, "TCP")]),
            # v4: IPv4 here, IPv6 endpoints in west: A and AAAA answer from the same clusters.
            service("shop", "v4", cluster_ips=["10.96.1.50"]),
            endpoint_slice("shop", "v4-e", "v4", [{"ip": "10.244.1.50"}]),
            # mixed: one named port here, another in west (the SRV union).
            service("shop", "mixed", cluster_ips=["10.96.1.60"], ports=[("http", 80, "TCP")]),
            endpoint_slice("shop", "mixed-e", "mixed", [{"ip": "10.244.1.60"}]),
        ],
        "west": [
            service("shop", "web", cluster_ips=["10.96.2.10"], ports=[("http", 80, "TCP"), ("metrics", 9090, "TCP")]),
            endpoint_slice("shop", "web-w", "web", [{"ip": "10.244.2.5"}, {"ip": "10.244.2.6"},
                                                   {"ip": "10.244.2.7", "ready": False}],
                           ports=[("http", 8080, "TCP"), ("metrics", 9090, "TCP")]),
            endpoint_slice("shop", "web-w6", "web", [{"ip": "fd00:244:2::5"}], address_type="IPv6",
                           ports=[("http", 8080, "TCP"), ("metrics", 9090, "TCP")]),
            # api: not in the local cluster; ready only here.
            service("shop", "api", cluster_ips=["10.96.2.20"]),
            endpoint_slice("shop", "api-w", "api", [{"ip": "10.244.2.20"}]),
            service("shop", "idle", cluster_ips=["10.96.2.30"]),
            # idle2: only here, no endpoints: exists, but a remote VIP is no answer by default.
            service("shop", "idle2", cluster_ips=["10.96.2.31"]),
            service("shop", "db", headless=True, ports=[("pg", 5432, "TCP")]),
            endpoint_slice("shop", "db-w", "db", [{"ip": "10.244.2.40", "hostname": "db-0"},
                                                  {"ip": "10.244.2.41", "hostname": "db-1"}],
                           ports=[("pg", 5432, "TCP")]),
            # hl-none: headless with nothing ready: NXDOMAIN.
            service("shop", "hl-none", headless=True),
            endpoint_slice("shop", "hl-none-w", "hl-none", [{"ip": "10.244.2.90", "ready": False}]),
            service("shop", "v4", cluster_ips=["fd00:96:2::50"]),
            endpoint_slice("shop", "v4-w", "v4", [{"ip": "fd00:244:2::50"}], address_type="IPv6"),
            service("shop", "mixed", cluster_ips=["10.96.2.60"], ports=[("grpc", 9000, "TCP")]),
            endpoint_slice("shop", "mixed-w", "mixed", [{"ip": "10.244.2.60"}], ports=[("grpc", 9000, "TCP")]),
        ],
        "central.eu": [
            service("shop", "web", cluster_ips=["10.96.3.10"], ports=[("http", 80, "TCP")]),
            endpoint_slice("shop", "web-c", "web", [{"ip": "10.244.3.5"}]),
            service("shop", "api", cluster_ips=["10.96.3.20"]),
            endpoint_slice("shop", "api-c", "api", [{"ip": "10.244.3.20", "ready": False}]),
            # ext: an alias, in central only.
            service("shop", "ext", external_name="www.example.com", ports=[]),
            service("shop", "db", headless=True, ports=[("pg", 5432, "TCP")]),
            endpoint_slice("shop", "db-c", "db", [{"ip": "10.244.3.40", "hostname": "db-0"}],
                           ports=[("pg", 5432, "TCP")]),
        ],
    }
    return objs[cluster]


def mcs(cluster: str) -> list[Obj]:
    """The MCS specification's cases: what each cluster holds in namespace mcs."""
    objs: dict[str, list[Obj]] = {
        "east": [
            # front: exported by west and central.eu; east (the importing cluster) holds the
            # ServiceImport with the clusterset IPs.
            service_import("mcs", "front", ips=["10.200.0.10", "fd00:200::10"], clusters=["west", "central.eu"]),
            # hidden: a plain Service, in east and west, never exported.
            service("mcs", "hidden", cluster_ips=["10.96.1.70"]),
            endpoint_slice("mcs", "hidden-e", "hidden", [{"ip": "10.244.1.70"}]),
            # pets: headless, exported here and from central.eu (not from west).
            service("mcs", "pets", headless=True, ports=[("peer", 2380, "TCP")]),
            endpoint_slice("mcs", "pets-e", "pets", [{"ip": "10.244.1.60", "hostname": "pet-0"}],
                           ports=[("peer", 2380, "TCP")]),
            export("mcs", "pets"),
            # quiet: imported with an IP, but no exporting cluster has a ready endpoint.
            service_import("mcs", "quiet", ips=["10.200.0.20"], clusters=["west"]),
            # imported: no ServiceExport anywhere; the import (v1alpha2 layout) names central.eu.
            service_import("mcs", "imported", ips=["10.200.0.30"], clusters=["central.eu"], v1alpha2=True),
            # hl-imp: exported headless as the import says (type Headless, from west).
            service_import("mcs", "hl-imp", type_="Headless", clusters=["west"], ports=[]),
            # plain: exported ClusterIP without any ServiceImport (no MCS controller).
            service("mcs", "plain", cluster_ips=["10.96.1.80"]),
            endpoint_slice("mcs", "plain-e", "plain", [{"ip": "10.244.1.80"}]),
            export("mcs", "plain"),
        ],
        "west": [
            service("mcs", "front", cluster_ips=["10.96.2.10"], ports=[("http", 80, "TCP")]),
            endpoint_slice("mcs", "front-w", "front", [{"ip": "10.244.2.10"}]),
            export("mcs", "front"),
            # West's own import of front, with a per-cluster IP: east's is the one answered.
            service_import("mcs", "front", ips=["10.201.0.10"], clusters=["west", "central.eu"]),
            service("mcs", "hidden", cluster_ips=["10.96.2.70"]),
            endpoint_slice("mcs", "hidden-w", "hidden", [{"ip": "10.244.2.70"}]),
            service("mcs", "pets", headless=True, ports=[("peer", 2380, "TCP")]),
            endpoint_slice("mcs", "pets-w", "pets", [{"ip": "10.244.2.60", "hostname": "pet-0"}],
                           ports=[("peer", 2380, "TCP")]),
            service("mcs", "quiet", cluster_ips=["10.96.2.20"]),
            endpoint_slice("mcs", "quiet-w", "quiet", [{"ip": "10.244.2.20", "ready": False}]),
            export("mcs", "quiet"),
            # alias: an exported ExternalName is never part of the clusterset.
            service("mcs", "alias", external_name="www.example.com", ports=[]),
            export("mcs", "alias"),
            service("mcs", "hl-imp", headless=True),
            endpoint_slice("mcs", "hl-imp-w", "hl-imp", [{"ip": "10.244.2.70", "hostname": "h-0"}]),
            service("mcs", "plain", cluster_ips=["10.96.2.80"]),
            endpoint_slice("mcs", "plain-w", "plain", [{"ip": "10.244.2.80"}]),
            export("mcs", "plain"),
        ],
        "central.eu": [
            service("mcs", "front", cluster_ips=["10.96.3.10"], ports=[("http", 80, "TCP")]),
            endpoint_slice("mcs", "front-c", "front", [{"ip": "10.244.3.10"}]),
            export("mcs", "front"),
            service("mcs", "pets", headless=True, ports=[("peer", 2380, "TCP")]),
            endpoint_slice("mcs", "pets-c", "pets", [{"ip": "10.244.3.60", "hostname": "pet-0"}],
                           ports=[("peer", 2380, "TCP")]),
            endpoint_slice("mcs", "pets-c6", "pets", [{"ip": "fd00:244:3::61", "hostname": "pet-1"}],
                           ports=[("peer", 2380, "TCP")], address_type="IPv6"),
            export("mcs", "pets"),
            service("mcs", "imported", cluster_ips=["10.96.3.30"]),
            endpoint_slice("mcs", "imported-c", "imported", [{"ip": "10.244.3.30"}]),
        ],
    }
    return objs[cluster]


def cluster_objects(cluster: str) -> list[Obj]:
    return shop(cluster) + mcs(cluster)


def kubernetes_stanzas(files: dict[str, Path], live: dict[str, str] | None = None) -> str:
    """One kubernetes stanza per cluster: from its snapshot, or from a kubeconfig context
    (``live``: cluster name -> "KUBECONFIG CONTEXT")."""
    out = []
    for name in CLUSTERS:
        source = f"kubeconfig {live[name]}" if live and name in live else f"snapshot {files[name]}"
        out.append(f"""    kubernetes cluster.{SHORT[name]} {{
        {source}
        cluster {name}
        startup_timeout 1s
    }}
""")
    return "".join(out)


def corefile(files: dict[str, Path], clusterset: str, live: dict[str, str] | None = None,
             extra: str = "") -> str:
    """A server block with the three clusters' stanzas and the given clusterset stanza(s)."""
    return (".:PORT {\n    bind 127.0.0.1\n" + extra + kubernetes_stanzas(files, live) + clusterset + "}\n")


ALL = """    clusterset cluster.all {
        clusters east west central.eu
        local east
        policy local-first
    }
"""
MCS = """    clusterset clusterset.local {
        clusters east west central.eu
        local east
        policy all
        mcs
    }
"""

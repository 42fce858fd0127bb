"""The differential corpus: one set of Kubernetes objects, the questions asked about them, and
how the answers of interkube and CoreDNS are compared.

Both servers read the same kube-apiserver with the same kubeconfig and serve the same zones
from (nearly) the same Corefile: ``cluster.local`` with the reverse zones and ``pods insecure``,
and ``pods.test`` with ``pods verified``, ``endpoint_pod_names``, ``ignore empty_service`` and
``ttl 30``; and, when interkube has its *clusterset* plugin, ``clusterset.local`` (CoreDNS's
``multicluster clusterset.local`` against ``clusterset clusterset.local { mcs }``, questions
:data:`MCS_CASES`). Every question of :data:`CASES` goes to both; :func:`compare` reduces each answer to
the parts that are meaningful to compare (rcode, AA/TC/RA, the answer RRsets without regard to
order, the authority section's SOA without its serial, the additional section, every TTL) and
names the parts that differ.

Every difference must be listed in ``docs/divergences.md`` (see :func:`documented`); the test
in ``test_differential.py`` fails on any other, and on a listed one that no longer differs.
``python -m tests.peers.differential_report`` runs the same comparison outside pytest and
prints the figures.

Used by pytest (imported as ``differential_corpus``, tests/peers being on sys.path) and by the
report (imported as ``tests.peers.differential_corpus``), so it imports nothing from tests/.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.reversename
from lightkube.resources.core_v1 import Pod

from testkit.coredns import CoreDNS
from testkit.kubeapi import KubeAPI, KubeObjects
from testkit.servers import free_port, interkube_process, process_output
from testkit.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
DIVERGENCES_DOC = REPO / "docs" / "divergences.md"

#: The parts of an answer compared, in the order reports name them.
ASPECTS = ("rcode", "flags", "answer", "authority", "additional", "ttl")

# --- the objects -----------------------------------------------------------------------------


@dataclass
class World:
    """The objects created for one run, and the values questions are written with."""

    ns: str                 # Services of every kind
    podns: str              # Pods only, no Service (exists as a Namespace)
    empty: str              # a Namespace with nothing in it
    mcs: str = ""           # the MCS objects (when MCS is compared)
    values: dict[str, str] = field(default_factory=dict)

    @property
    def namespaces(self) -> tuple[str, ...]:
        return tuple(n for n in (self.ns, self.podns, self.empty, self.mcs) if n)

    def fill(self, template: str) -> str:
        return template.format(**self.values)


def _reverse(ip: str) -> str:
    return dns.reversename.from_address(ip).to_text()


#: Endpoint addresses (values only: nothing is ever sent to them).
BIG_ENDPOINTS = 60


def populate(kube: KubeObjects, tag: str | None = None) -> World:
    """Create the corpus's namespaces and objects; returns the World naming them."""
    tag = tag or secrets.token_hex(3)
    world = World(ns=f"diff-{tag}", podns=f"diff-pods-{tag}", empty=f"diff-empty-{tag}")
    for namespace in world.namespaces:
        kube.namespace(namespace)
    ns = world.ns
    v: dict[str, str] = {"ns": ns, "podns": world.podns, "empty": world.empty}

    # ClusterIP: three named ports (two protocols) and endpoints, one of them not ready.
    web = kube.service(ns, "web", ports=[("http", 80, "TCP"), ("metrics", 9090, "TCP"),
                                         ("dns", 53, "UDP")])
    kube.endpoint_slice(ns, "web-a", service="web", addresses=[
        {"addresses": ["10.1.0.5"], "conditions": {"ready": True}, "hostname": "web-0",
         "targetRef": {"kind": "Pod", "name": "web-pod-0", "namespace": ns}},
        {"addresses": ["10.1.0.6"], "conditions": {"ready": True},
         "targetRef": {"kind": "Pod", "name": "web-pod-1", "namespace": ns}},
        {"addresses": ["10.1.0.7"], "conditions": {"ready": False},
         "targetRef": {"kind": "Pod", "name": "web-pod-2", "namespace": ns}},
    ], ports=[("http", 8080, "TCP"), ("metrics", 9090, "TCP"), ("dns", 53, "UDP")])
    v["web_ip"] = web.spec.clusterIP
    v["web_ptr"] = _reverse(web.spec.clusterIP)

    # One unnamed port.
    single = kube.service(ns, "single", ports=[(None, 8080, "TCP")])
    kube.endpoint_slice(ns, "single-a", service="single", addresses=["10.1.0.20"],
                        ports=[(None, 8080, "TCP")])
    v["single_ip"] = single.spec.clusterIP

    # SCTP, and the same port number over UDP and TCP under two names.
    kube.service(ns, "multi", ports=[("sig", 9999, "SCTP"), ("dns", 53, "UDP"),
                                     ("dns-tcp", 53, "TCP")])

    # NodePort and LoadBalancer Services answer as ClusterIP ones.
    kube.service(ns, "np", type="NodePort", ports=[("http", 80, "TCP")])
    kube.service(ns, "lb", type="LoadBalancer", ports=[("http", 80, "TCP")])

    # A ClusterIP Service without endpoints (NXDOMAIN under `ignore empty_service`).
    kube.service(ns, "idle", ports=[("http", 80, "TCP")])

    # Dual-stack and IPv6-only ClusterIPs.
    dual = kube.dual_stack_service(ns, "dual", ports=[("http", 80, "TCP")])
    v4, v6 = dual.spec.clusterIPs
    v["dual_v4_ptr"], v["dual_v6_ptr"] = _reverse(v4), _reverse(v6)
    v6only = kube.service(ns, "v6only", ip_families=["IPv6"], ip_family_policy="SingleStack",
                          ports=[("http", 80, "TCP")])
    v["v6only_ptr"] = _reverse(v6only.spec.clusterIP)

    # Headless: a hostname, a pod-named endpoint, a not-ready one; TCP and UDP ports.
    kube.headless_service(ns, "hl", ports=[("http", 80, "TCP"), ("dns", 53, "UDP")])
    kube.endpoint_slice(ns, "hl-a", service="hl", addresses=[
        {"addresses": ["10.1.1.10"], "conditions": {"ready": True}, "hostname": "pet-0",
         "targetRef": {"kind": "Pod", "name": "pet-0", "namespace": ns}},
        {"addresses": ["10.1.1.11"], "conditions": {"ready": True},
         "targetRef": {"kind": "Pod", "name": "hl-pod-b", "namespace": ns}},
        {"addresses": ["10.1.1.12"], "conditions": {"ready": False}, "hostname": "pet-2",
         "targetRef": {"kind": "Pod", "name": "pet-2", "namespace": ns}},
    ], ports=[("http", 8080, "TCP"), ("dns", 53, "UDP")])

    # Headless, dual-stack: one slice per family; an IPv6 address ending in "::".
    kube.headless_service(ns, "hl-ds", ip_family_policy="RequireDualStack",
                          ip_families=["IPv4", "IPv6"], ports=[("http", 80, "TCP")])
    kube.endpoint_slice(ns, "hl-ds-4", service="hl-ds", addresses=[
        {"addresses": ["10.1.2.1"], "conditions": {"ready": True}, "hostname": "a"}])
    kube.endpoint_slice(ns, "hl-ds-6", service="hl-ds", address_type="IPv6", addresses=[
        {"addresses": ["fd00:10:1:2::1"], "conditions": {"ready": True}, "hostname": "a"},
        "fd00:10:1:3::",
    ])

    # Headless with nothing ready, and headless without any slice.
    kube.headless_service(ns, "hl-none", ports=[("http", 80, "TCP")])
    kube.endpoint_slice(ns, "hl-none-a", service="hl-none", addresses=[
        {"addresses": ["10.1.3.1"], "conditions": {"ready": False}}])
    kube.headless_service(ns, "hl-empty", ports=[("http", 80, "TCP")])

    # Headless: the same address in two slices (as while slices are rebalanced), and an
    # endpoint whose readiness is not known (conditions unset: ready).
    kube.headless_service(ns, "dup", ports=[("http", 80, "TCP")])
    for name in ("dup-a", "dup-b"):
        kube.endpoint_slice(ns, name, service="dup", addresses=[
            {"addresses": ["10.1.7.1"], "conditions": {"ready": True}, "hostname": "one"}])
    kube.headless_service(ns, "unset", ports=[("http", 80, "TCP")])
    kube.endpoint_slice(ns, "unset-a", service="unset", addresses=[
        {"addresses": ["10.1.8.1"], "conditions": {}},
        {"addresses": ["10.1.8.2"], "conditions": {"ready": False, "serving": True,
                                                   "terminating": True}}])

    # Headless without ports.
    kube.headless_service(ns, "hl-noports", ports=())
    kube.endpoint_slice(ns, "hl-noports-a", service="hl-noports", ports=(), addresses=[
        {"addresses": ["10.1.4.1"], "conditions": {"ready": True}, "hostname": "solo"}])

    # publishNotReadyAddresses: as the EndpointSlice controller writes it (ready: true for
    # every endpoint of such a Service), and as written by hand (ready: false).
    kube.headless_service(ns, "pub", publish_not_ready_addresses=True, ports=[("http", 80, "TCP")])
    kube.endpoint_slice(ns, "pub-a", service="pub", addresses=[
        {"addresses": ["10.1.5.1"], "conditions": {"ready": True, "serving": False},
         "hostname": "p0"}])
    kube.headless_service(ns, "pub-raw", publish_not_ready_addresses=True,
                          ports=[("http", 80, "TCP")])
    kube.endpoint_slice(ns, "pub-raw-a", service="pub-raw", addresses=[
        {"addresses": ["10.1.5.2"], "conditions": {"ready": False}, "hostname": "p0"}])

    # A headless Service too large for a 512-byte UDP answer.
    kube.headless_service(ns, "big", ports=[("http", 80, "TCP")])
    kube.endpoint_slice(ns, "big-a", service="big", addresses=[
        f"10.1.6.{i}" for i in range(1, BIG_ENDPOINTS + 1)])

    # ExternalName: outside the zones, inside (existing and not), an IP as the "name".
    kube.external_name_service(ns, "ext", "www.example.invalid")
    kube.external_name_service(ns, "ext-in", f"web.{ns}.svc.cluster.local")
    kube.external_name_service(ns, "ext-gone", f"gone.{ns}.svc.cluster.local")
    kube.external_name_service(ns, "ext-ip", "192.0.2.1")
    kube.external_name_service(ns, "ext-port", "www.example.invalid", ports=[("http", 80, "TCP")])
    kube.external_name_service(ns, "ext-dot", "www.example.invalid.")

    # Pods: in the Services' namespace and in one of their own; dual-stack; pending.
    kube.pod(ns, "web-pod-0", ips=["10.1.0.5"])
    kube.pod(world.podns, "p1", ips=["10.2.0.5", "fd00:10:2::5"])
    kube.pod(world.podns, "p2", ips=["10.2.0.6"])
    kube.pod(world.podns, "pending")
    # A terminating pod: bound to a node that has no kubelet, so a graceful delete leaves it
    # with its deletionTimestamp set.
    kube.pod(world.podns, "leaving", ips=["10.2.0.7"], node_name="node-without-kubelet")
    kube.client.delete(Pod, "leaving", namespace=world.podns, grace_period=300)

    world.values = v
    return world


#: The cluster ID of the one cluster in the MCS comparison.
CLUSTER_ID = "east"
MCS_SERVICE_NAME = "multicluster.kubernetes.io/service-name"
MCS_SOURCE_CLUSTER = "multicluster.kubernetes.io/source-cluster"


def populate_mcs(kube: KubeObjects, world: World) -> None:
    """The MCS objects of one cluster (``east``), as an MCS controller leaves them: exported
    Services with their ServiceExports, the ServiceImports, and the imported EndpointSlices
    (labelled with the MCS service name and source cluster) that CoreDNS's `multicluster` reads.
    """
    ns = world.mcs = kube.namespace(f"diff-mcs-{world.ns.removeprefix('diff-')}")
    world.values["mcs"] = ns
    mcs_labels = {MCS_SOURCE_CLUSTER: CLUSTER_ID}

    def imported_slice(service: str, addresses: list[Any], ports: list[Any]) -> None:
        kube.endpoint_slice(ns, f"{service}-{CLUSTER_ID}", service=None, addresses=addresses,
                            ports=ports, labels={MCS_SERVICE_NAME: service, **mcs_labels})

    # ClusterSetIP, dual-stack clusterset IPs, two named ports.
    ports = [("http", 80, "TCP"), ("dns", 53, "UDP")]
    kube.service(ns, "web", ports=ports)
    web_eps = ["10.3.0.5", "10.3.0.6"]
    kube.endpoint_slice(ns, "web-a", service="web", addresses=web_eps, ports=ports)
    kube.service_export(ns, "web")
    kube.service_import(ns, "web", ips=["10.97.0.10", "fd00:10:97::10"],
                        ip_families=["IPv4", "IPv6"], ports=ports, clusters=[CLUSTER_ID])
    imported_slice("web", web_eps, ports)

    # Headless: endpoint names per cluster.
    hl_ports = [("http", 8080, "TCP")]
    kube.headless_service(ns, "hl", ports=hl_ports)
    hl_eps: list[Any] = [
        {"addresses": ["10.3.1.10"], "conditions": {"ready": True}, "hostname": "pet-0"},
        {"addresses": ["10.3.1.11"], "conditions": {"ready": True}}]
    kube.endpoint_slice(ns, "hl-a", service="hl", addresses=hl_eps, ports=hl_ports)
    kube.service_export(ns, "hl")
    kube.service_import(ns, "hl", type="Headless", ports=hl_ports, clusters=[CLUSTER_ID])
    imported_slice("hl", hl_eps, hl_ports)

    # Not exported; exported without a ServiceImport (no MCS controller has run); an
    # ExternalName, exported (which MCS never exports).
    kube.service(ns, "private", ports=ports)
    kube.endpoint_slice(ns, "private-a", service="private", addresses=["10.3.2.1"], ports=ports)
    kube.service(ns, "unimported", ports=ports)
    kube.endpoint_slice(ns, "unimported-a", service="unimported", addresses=["10.3.3.1"],
                        ports=ports)
    kube.service_export(ns, "unimported")
    kube.external_name_service(ns, "ext", "www.example.invalid")
    kube.service_export(ns, "ext")
    # A ServiceImport of a Service this cluster does not have (it lives in another cluster).
    kube.service_import(ns, "remote", ips=["10.97.0.20"], ip_families=["IPv4"], ports=ports,
                        clusters=["west"])


# --- the servers -----------------------------------------------------------------------------

#: One Corefile for both: ``{port}`` is ":PORT" for interkube and "" for CoreDNS (which takes
#: its port from -dns.port); ``{kubeconfig}`` is the fixture's admin kubeconfig.
COREFILE = """\
cluster.local{port} in-addr.arpa{port} ip6.arpa{port} {{
    bind 127.0.0.1
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
    }}
}}
pods.test{port} {{
    bind 127.0.0.1
    kubernetes pods.test {{
        kubeconfig {kubeconfig}
        pods verified
        endpoint_pod_names
        ignore empty_service
        ttl 30
    }}
}}
"""


#: The MCS server block: CoreDNS's `multicluster` option, interkube's clusterset plugin over
#: one kubernetes stanza serving the cluster ``east``.
COREFILE_MCS_COREDNS = """\
clusterset.local {{
    bind 127.0.0.1
    kubernetes cluster.local clusterset.local {{
        kubeconfig {kubeconfig}
        multicluster clusterset.local
    }}
}}
"""
COREFILE_MCS_INTERKUBE = """\
clusterset.local:{port} {{
    bind 127.0.0.1
    kubernetes cluster.{cluster} {{
        kubeconfig {kubeconfig}
        cluster {cluster}
    }}
    clusterset clusterset.local {{
        mcs
    }}
}}
"""


def mcs_available() -> bool:
    """Whether this build of interkube has the clusterset plugin (MCS `clusterset.local`)."""
    import importlib.util

    return importlib.util.find_spec("interkube.plugins.clusterset") is not None


@dataclass
class Pair:
    """CoreDNS and interkube serving the same Corefile."""

    coredns: CoreDNS
    interkube_port: int
    interkube_proc: Any

    def interkube_log(self) -> str:
        return process_output(self.interkube_proc)


@contextlib.contextmanager
def servers(coredns_binary: Path, kubeconfig: Path, workdir: Path, mcs: bool = False) -> Iterator[Pair]:
    """Start CoreDNS and interkube on loopback (their own ports) with :data:`COREFILE` (and
    the MCS block)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    ours = COREFILE.format(port=f":{port}", kubeconfig=kubeconfig)
    theirs = COREFILE.format(port="", kubeconfig=kubeconfig)
    if mcs:
        ours += COREFILE_MCS_INTERKUBE.format(port=port, kubeconfig=kubeconfig, cluster=CLUSTER_ID)
        theirs += COREFILE_MCS_COREDNS.format(kubeconfig=kubeconfig)
    corefile = workdir / "Corefile.interkube"
    corefile.write_text(ours)
    coredns = CoreDNS(coredns_binary, theirs, workdir / "coredns", probe_name="cluster.local.")
    with coredns, interkube_process(corefile, port) as proc:
        yield Pair(coredns, port, proc)


# --- the questions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One question. ``name`` is a template over :attr:`World.values`."""

    id: str
    name: str
    qtype: str
    tcp: bool = False
    edns: int | None = None     # EDNS payload size; None: no EDNS
    group: str = ""


def _cases() -> list[Case]:
    z = "cluster.local"
    p = "pods.test"
    out: list[Case] = []

    def add(id: str, name: str, qtype: str, group: str, **kw: Any) -> None:
        out.append(Case(id, name, qtype, group=group, **kw))

    svc = f"{{ns}}.svc.{z}"
    # ClusterIP
    g = "clusterip"
    for t in ("A", "AAAA", "SRV", "TXT", "CNAME", "MX", "NS", "SOA", "PTR", "HTTPS", "ANY"):
        add(f"web-{t.lower()}", f"web.{svc}", t, g)
    add("web-a-tcp", f"web.{svc}", "A", g, tcp=True)
    add("web-a-edns", f"web.{svc}", "A", g, edns=1232)
    add("web-a-mixed-case", "WeB.{ns}.SvC.ClUsTeR.LoCaL", "A", g)
    add("web-endpoint-hostname-a", f"web-0.web.{svc}", "A", g)
    add("web-endpoint-dashed-a", f"10-1-0-6.web.{svc}", "A", g)
    add("web-endpoint-notready-a", f"10-1-0-7.web.{svc}", "A", g)
    add("web-endpoint-srv", f"web-0.web.{svc}", "SRV", g)
    add("dual-a", f"dual.{svc}", "A", g)
    add("dual-aaaa", f"dual.{svc}", "AAAA", g)
    add("dual-srv", f"_http._tcp.dual.{svc}", "SRV", g)
    add("v6only-a", f"v6only.{svc}", "A", g)
    add("v6only-aaaa", f"v6only.{svc}", "AAAA", g)
    add("idle-a", f"idle.{svc}", "A", g)
    add("nodeport-a", f"np.{svc}", "A", g)
    add("nodeport-srv", f"_http._tcp.np.{svc}", "SRV", g)
    add("loadbalancer-a", f"lb.{svc}", "A", g)
    # ports and protocols
    g = "ports"
    add("srv-http-tcp", f"_http._tcp.web.{svc}", "SRV", g)
    add("srv-dns-udp", f"_dns._udp.web.{svc}", "SRV", g)
    add("srv-http-udp-wrong-proto", f"_http._udp.web.{svc}", "SRV", g)
    add("srv-http-sctp-wrong-proto", f"_http._sctp.web.{svc}", "SRV", g)
    add("srv-missing-port", f"_nope._tcp.web.{svc}", "SRV", g)
    add("srv-port-any-proto", f"_http._tcp.web.{svc}", "A", g)
    add("srv-proto-only", f"_tcp.web.{svc}", "SRV", g)
    add("srv-sctp", f"_sig._sctp.multi.{svc}", "SRV", g)
    add("srv-multi-all", f"multi.{svc}", "SRV", g)
    add("srv-dns-tcp-name", f"_dns-tcp._tcp.multi.{svc}", "SRV", g)
    add("srv-dns-name-tcp-proto", f"_dns._tcp.multi.{svc}", "SRV", g)
    add("srv-unnamed-bare", f"single.{svc}", "SRV", g)
    add("srv-unnamed-underscore", f"_._tcp.single.{svc}", "SRV", g)
    add("srv-unnamed-a", f"single.{svc}", "A", g)
    add("srv-no-underscore", f"http.tcp.web.{svc}", "SRV", g)
    # headless
    g = "headless"
    for t in ("A", "AAAA", "SRV", "TXT", "CNAME"):
        add(f"hl-{t.lower()}", f"hl.{svc}", t, g)
    add("hl-srv-http", f"_http._tcp.hl.{svc}", "SRV", g)
    add("hl-srv-dns-udp", f"_dns._udp.hl.{svc}", "SRV", g)
    add("hl-endpoint-hostname-a", f"pet-0.hl.{svc}", "A", g)
    add("hl-endpoint-hostname-aaaa", f"pet-0.hl.{svc}", "AAAA", g)
    add("hl-endpoint-dashed-a", f"10-1-1-11.hl.{svc}", "A", g)
    add("hl-endpoint-notready-a", f"pet-2.hl.{svc}", "A", g)
    add("hl-endpoint-missing-a", f"nobody.hl.{svc}", "A", g)
    add("hl-endpoint-srv", f"pet-0.hl.{svc}", "SRV", g)
    add("hl-ds-a", f"hl-ds.{svc}", "A", g)
    add("hl-ds-aaaa", f"hl-ds.{svc}", "AAAA", g)
    add("hl-ds-srv", f"hl-ds.{svc}", "SRV", g)
    add("hl-ds-endpoint-aaaa", f"a.hl-ds.{svc}", "AAAA", g)
    add("hl-ds-endpoint-v6-dashed", f"fd00-10-1-3--0.hl-ds.{svc}", "AAAA", g)
    add("hl-ds-endpoint-v6-dashed-bare", f"fd00-10-1-3--.hl-ds.{svc}", "AAAA", g)
    add("hl-none-a", f"hl-none.{svc}", "A", g)
    add("hl-none-srv", f"hl-none.{svc}", "SRV", g)
    add("hl-empty-a", f"hl-empty.{svc}", "A", g)
    add("hl-noports-a", f"hl-noports.{svc}", "A", g)
    add("hl-noports-srv", f"hl-noports.{svc}", "SRV", g)
    add("hl-noports-endpoint-a", f"solo.hl-noports.{svc}", "A", g)
    add("dup-a", f"dup.{svc}", "A", g)
    add("dup-srv", f"dup.{svc}", "SRV", g)
    add("dup-endpoint-a", f"one.dup.{svc}", "A", g)
    add("ptr-dup", _reverse("10.1.7.1"), "PTR", g)
    add("unset-ready-a", f"unset.{svc}", "A", g)
    add("unset-terminating-a", f"10-1-8-2.unset.{svc}", "A", g)
    add("pub-a", f"pub.{svc}", "A", g)
    add("pub-endpoint-a", f"p0.pub.{svc}", "A", g)
    add("pub-raw-a", f"pub-raw.{svc}", "A", g)
    add("big-a-udp", f"big.{svc}", "A", g)
    add("big-a-edns", f"big.{svc}", "A", g, edns=4096)
    add("big-a-tcp", f"big.{svc}", "A", g, tcp=True)
    add("big-srv-tcp", f"big.{svc}", "SRV", g, tcp=True)
    # ExternalName
    g = "externalname"
    for t in ("A", "AAAA", "CNAME", "SRV", "TXT", "MX"):
        add(f"ext-{t.lower()}", f"ext.{svc}", t, g)
    add("ext-in-a", f"ext-in.{svc}", "A", g)
    add("ext-in-cname", f"ext-in.{svc}", "CNAME", g)
    add("ext-in-aaaa", f"ext-in.{svc}", "AAAA", g)
    add("ext-gone-a", f"ext-gone.{svc}", "A", g)
    add("ext-dot-cname", f"ext-dot.{svc}", "CNAME", g)
    add("ext-dot-a", f"ext-dot.{svc}", "A", g)
    add("ext-ip-a", f"ext-ip.{svc}", "A", g)
    add("ext-ip-cname", f"ext-ip.{svc}", "CNAME", g)
    add("ext-port-srv", f"_http._tcp.ext-port.{svc}", "SRV", g)
    add("ext-endpoint-a", f"x.ext.{svc}", "A", g)
    # reverse
    g = "ptr"
    add("ptr-clusterip", "{web_ptr}", "PTR", g)
    add("ptr-clusterip-a", "{web_ptr}", "A", g)
    add("ptr-dual-v4", "{dual_v4_ptr}", "PTR", g)
    add("ptr-dual-v6", "{dual_v6_ptr}", "PTR", g)
    add("ptr-v6only", "{v6only_ptr}", "PTR", g)
    add("ptr-endpoint-hostname", _reverse("10.1.0.5"), "PTR", g)
    add("ptr-endpoint-dashed", _reverse("10.1.0.6"), "PTR", g)
    add("ptr-endpoint-notready", _reverse("10.1.0.7"), "PTR", g)
    add("ptr-headless-endpoint", _reverse("10.1.1.10"), "PTR", g)
    add("ptr-headless-v6", _reverse("fd00:10:1:2::1"), "PTR", g)
    add("ptr-pub-raw", _reverse("10.1.5.2"), "PTR", g)
    add("ptr-pod-only", _reverse("10.2.0.5"), "PTR", g)
    add("ptr-unknown", _reverse("10.96.255.254"), "PTR", g)
    add("ptr-partial", "96.10.in-addr.arpa.", "PTR", g)
    add("ptr-apex-soa", "in-addr.arpa.", "SOA", g)
    add("ptr-apex-ns", "in-addr.arpa.", "NS", g)
    add("ptr-ip6-apex-soa", "ip6.arpa.", "SOA", g)
    # apex, empty non-terminals, namespaces, the schema
    g = "apex"
    for t in ("SOA", "NS", "A", "AAAA", "TXT", "MX", "SRV", "PTR"):
        add(f"apex-{t.lower()}", f"{z}.", t, g)
    add("apex-soa-tcp", f"{z}.", "SOA", g, tcp=True)
    add("dns-version-txt", f"dns-version.{z}", "TXT", g)
    add("dns-version-a", f"dns-version.{z}", "A", g)
    add("ns-dns-a", f"ns.dns.{z}", "A", g)
    add("ns-dns-aaaa", f"ns.dns.{z}", "AAAA", g)
    add("ns-dns-txt", f"ns.dns.{z}", "TXT", g)
    add("apex-dnskey", f"{z}.", "DNSKEY", g)
    add("apex-axfr", f"{z}.", "AXFR", g, tcp=True)
    add("dns-ent-a", f"dns.{z}", "A", g)
    add("svc-ent-a", f"svc.{z}", "A", g)
    add("svc-ent-soa", f"svc.{z}", "SOA", g)
    add("svc-ent-txt", f"svc.{z}", "TXT", g)
    add("pod-ent-a", f"pod.{z}", "A", g)
    add("ns-ent-a", svc, "A", g)
    add("ns-ent-srv", svc, "SRV", g)
    add("ns-ent-txt", svc, "TXT", g)
    add("ns-ent-ns", svc, "NS", g)
    add("ns-pod-ent-a", f"{{ns}}.pod.{z}", "A", g)
    add("ns-empty-a", f"{{empty}}.svc.{z}", "A", g)
    add("ns-empty-srv", f"{{empty}}.svc.{z}", "SRV", g)
    add("ns-podonly-a", f"{{podns}}.svc.{z}", "A", g)
    add("ns-missing-a", f"no-such-ns.svc.{z}", "A", g)
    # missing and malformed names
    g = "missing"
    add("svc-missing-a", f"missing.{svc}", "A", g)
    add("svc-missing-srv", f"missing.{svc}", "SRV", g)
    add("svc-missing-txt", f"missing.{svc}", "TXT", g)
    add("svc-missing-ns-a", f"web.no-such-ns.svc.{z}", "A", g)
    add("svc-in-empty-ns-a", f"web.{{empty}}.svc.{z}", "A", g)
    add("not-svc-or-pod-a", f"web.{{ns}}.foo.{z}", "A", g)
    add("zone-child-a", f"foo.{z}", "A", g)
    add("too-many-labels-a", f"a.b.c.web.{svc}", "A", g)
    add("too-many-labels-srv", f"x._http._tcp.web.{svc}", "SRV", g)
    add("wildcard-svc-a", f"*.{svc}", "A", g)
    add("wildcard-ns-a", f"web.*.svc.{z}", "A", g)
    add("out-of-zone-a", "www.example.invalid.", "A", g)
    # pods insecure (cluster.local) and verified (pods.test)
    g = "pods"
    add("pod-insecure-a", f"10-1-0-5.{{ns}}.pod.{z}", "A", g)
    add("pod-insecure-any-ip-a", f"10-9-9-9.{{ns}}.pod.{z}", "A", g)
    add("pod-insecure-aaaa-of-v4", f"10-1-0-5.{{ns}}.pod.{z}", "AAAA", g)
    add("pod-insecure-v6-aaaa", f"fd00-10-2--5.{{ns}}.pod.{z}", "AAAA", g)
    add("pod-insecure-podns-a", f"10-2-0-5.{{podns}}.pod.{z}", "A", g)
    add("pod-insecure-empty-ns-a", f"10-2-0-5.{{empty}}.pod.{z}", "A", g)
    add("pod-insecure-missing-ns-a", f"10-2-0-5.no-such-ns.pod.{z}", "A", g)
    add("pod-insecure-not-ip-a", f"web.{{ns}}.pod.{z}", "A", g)
    add("pod-insecure-srv", f"10-1-0-5.{{ns}}.pod.{z}", "SRV", g)
    add("pod-insecure-ent-podns", f"{{podns}}.pod.{z}", "A", g)
    add("pod-verified-a", f"10-2-0-5.{{podns}}.pod.{p}", "A", g)
    add("pod-verified-v6-aaaa", f"fd00-10-2--5.{{podns}}.pod.{p}", "AAAA", g)
    add("pod-verified-second", f"10-2-0-6.{{podns}}.pod.{p}", "A", g)
    add("pod-verified-unknown-ip", f"10-2-0-9.{{podns}}.pod.{p}", "A", g)
    add("pod-verified-wrong-ns", f"10-2-0-5.{{ns}}.pod.{p}", "A", g)
    add("pod-verified-svc-ns-pod", f"10-1-0-5.{{ns}}.pod.{p}", "A", g)
    add("pod-verified-terminating", f"10-2-0-7.{{podns}}.pod.{p}", "A", g)
    add("pod-verified-srv", f"10-2-0-5.{{podns}}.pod.{p}", "SRV", g)
    add("pod-verified-txt", f"10-2-0-5.{{podns}}.pod.{p}", "TXT", g)
    add("pod-verified-ent-podns", f"{{podns}}.pod.{p}", "A", g)
    add("pod-verified-ent-podns-svc", f"{{podns}}.svc.{p}", "A", g)
    # the second stanza: ttl 30, endpoint_pod_names, ignore empty_service
    g = "options"
    add("opt-web-a", f"web.{{ns}}.svc.{p}", "A", g)
    add("opt-idle-a", f"idle.{{ns}}.svc.{p}", "A", g)
    add("opt-hl-srv", f"_http._tcp.hl.{{ns}}.svc.{p}", "SRV", g)
    add("opt-hl-podname-a", f"hl-pod-b.hl.{{ns}}.svc.{p}", "A", g)
    add("opt-hl-dashed-a", f"10-1-1-11.hl.{{ns}}.svc.{p}", "A", g)
    add("opt-web-podname-a", f"web-pod-1.web.{{ns}}.svc.{p}", "A", g)
    add("opt-missing-a", f"missing.{{ns}}.svc.{p}", "A", g)
    add("opt-apex-soa", f"{p}.", "SOA", g)
    add("opt-dns-version", f"dns-version.{p}", "TXT", g)
    add("opt-ptr-in-primary", "{web_ptr}", "PTR", g)
    return out


def _mcs_cases() -> list[Case]:
    z = "clusterset.local"
    svc = f"{{mcs}}.svc.{z}"
    g = "mcs"
    out: list[Case] = []

    def add(id: str, name: str, qtype: str) -> None:
        out.append(Case(f"mcs-{id}", name, qtype, group=g))

    for t in ("A", "AAAA", "SRV", "TXT"):
        add(f"clustersetip-{t.lower()}", f"web.{svc}", t)
    add("clustersetip-srv-port", f"_http._tcp.web.{svc}", "SRV")
    add("clustersetip-srv-wrong-proto", f"_http._udp.web.{svc}", "SRV")
    add("clustersetip-cluster-name", f"{CLUSTER_ID}.web.{svc}", "A")
    add("clustersetip-endpoint-name", f"10-3-0-5.{CLUSTER_ID}.web.{svc}", "A")
    add("headless-a", f"hl.{svc}", "A")
    add("headless-srv", f"hl.{svc}", "SRV")
    add("headless-endpoint-a", f"pet-0.{CLUSTER_ID}.hl.{svc}", "A")
    add("headless-endpoint-dashed-a", f"10-3-1-11.{CLUSTER_ID}.hl.{svc}", "A")
    add("headless-endpoint-other-cluster", f"pet-0.west.hl.{svc}", "A")
    add("headless-endpoint-no-cluster", f"pet-0.hl.{svc}", "A")
    add("headless-cluster-name", f"{CLUSTER_ID}.hl.{svc}", "A")
    add("not-exported-a", f"private.{svc}", "A")
    add("exported-not-imported-a", f"unimported.{svc}", "A")
    add("externalname-exported-a", f"ext.{svc}", "A")
    add("imported-elsewhere-a", f"remote.{svc}", "A")
    add("missing-a", f"missing.{svc}", "A")
    add("ns-ent-a", svc, "A")
    add("apex-soa", f"{z}.", "SOA")
    add("apex-ns", f"{z}.", "NS")
    add("dns-version-txt", f"dns-version.{z}", "TXT")
    add("pod-a", f"10-3-0-5.{{mcs}}.pod.{z}", "A")
    return out


CASES: tuple[Case, ...] = tuple(_cases())
#: Asked only when interkube has the clusterset plugin (see :func:`mcs_available`).
MCS_CASES: tuple[Case, ...] = tuple(_mcs_cases())
ALL_CASE_IDS = frozenset(c.id for c in CASES + MCS_CASES)
assert len(ALL_CASE_IDS) == len(CASES) + len(MCS_CASES), "case ids must be unique"

#: A question whose answer proves a server has the whole corpus (the last objects created).
SENTINELS = (Case("sentinel-pod", "10-2-0-5.{podns}.pod.pods.test", "A"),
             Case("sentinel-big", "big.{ns}.svc.cluster.local", "A", tcp=True))
MCS_SENTINELS = (Case("sentinel-mcs", "web.{mcs}.svc.clusterset.local", "A"),)


# --- asking and comparing --------------------------------------------------------------------


def ask(port: int, case: Case, world: World, timeout: float = 3.0) -> dns.message.Message | None:
    """One question to 127.0.0.1:port; None when no answer came (after one retry over UDP)."""
    name = world.fill(case.name)
    q = dns.message.make_query(name, case.qtype, use_edns=case.edns is not None,
                               payload=case.edns or 512)
    for _ in range(2):
        try:
            if case.tcp:
                return dns.query.tcp(q, "127.0.0.1", port=port, timeout=timeout)
            return dns.query.udp(q, "127.0.0.1", port=port, timeout=timeout,
                                 ignore_unexpected=True)
        except (dns.exception.Timeout, OSError):
            continue
    return None


def _rr_text(rrset: Any, rd: Any, *, with_ttl: bool = False) -> str:
    rdata = rd.to_text()
    if rrset.rdtype == dns.rdatatype.SOA:
        # The serial differs by design (docs/divergences.md); the rest of the SOA is compared.
        parts = rdata.split()
        parts[2] = "SERIAL"
        rdata = " ".join(parts)
    ttl = f" {rrset.ttl}" if with_ttl else ""
    return f"{rrset.name.to_text()}{ttl} {dns.rdatatype.to_text(rrset.rdtype)} {rdata}"


def summarize(msg: dns.message.Message | None) -> dict[str, Any]:
    """The comparable parts of an answer."""
    if msg is None:
        return {a: "no answer" for a in ASPECTS}
    flags = [f for f, bit in (("aa", dns.flags.AA), ("tc", dns.flags.TC), ("ra", dns.flags.RA))
             if msg.flags & bit]
    section = {n: sorted(_rr_text(rs, rd) for rs in getattr(msg, n) for rd in rs)
               for n in ("answer", "authority", "additional")}
    ttls = sorted({f"{n[:3]} {rs.name.to_text()} {dns.rdatatype.to_text(rs.rdtype)} {rs.ttl}"
                   for n in ("answer", "authority", "additional") for rs in getattr(msg, n)})
    return {"rcode": dns.rcode.to_text(msg.rcode()), "flags": flags, **section, "ttl": ttls}


@dataclass
class Result:
    case: Case
    question: str
    coredns: dict[str, Any]
    interkube: dict[str, Any]

    @property
    def differs(self) -> tuple[str, ...]:
        """The aspects that differ (empty: identical)."""
        return tuple(a for a in ASPECTS if self.coredns[a] != self.interkube[a])

    def describe(self) -> str:
        lines = [f"{self.case.id}: {self.question} {self.case.qtype}"
                 f"{' tcp' if self.case.tcp else ''}"
                 f"{f' edns {self.case.edns}' if self.case.edns else ''}"]
        for a in self.differs:
            lines.append(f"    {a}: coredns {self.coredns[a]!r}")
            lines.append(f"    {' ' * len(a)}  interkube {self.interkube[a]!r}")
        return "\n".join(lines)


def compare(pair: Pair, world: World, cases: tuple[Case, ...] = CASES) -> list[Result]:
    out = []
    for case in cases:
        a = summarize(ask(pair.coredns.port, case, world))
        b = summarize(ask(pair.interkube_port, case, world))
        out.append(Result(case, world.fill(case.name), a, b))
    return out


def wait_until_synced(pair: Pair, world: World, timeout: float = 60.0) -> None:
    """Until both servers answer the sentinel questions (the last objects created): an
    event-driven wait whose deadline only bounds a failure."""
    sentinels = SENTINELS + (MCS_SENTINELS if world.mcs else ())
    pending = {(port, case) for port in (pair.coredns.port, pair.interkube_port)
               for case in sentinels}

    def all_answered() -> bool:
        for item in list(pending):
            port, case = item
            reply = ask(port, case, world, timeout=1.0)
            if reply is not None and reply.answer:
                pending.discard(item)
        return not pending

    def unanswered() -> str:
        which = sorted((p, world.fill(c.name)) for p, c in pending)
        return (f"servers answered {which} (coredns on {pair.coredns.port}); interkube log:\n"
                f"{pair.interkube_log()[-3000:]}")

    wait_until(all_answered, unanswered, timeout, every=0.2)


# --- the documented divergences --------------------------------------------------------------


@dataclass(frozen=True)
class Divergence:
    """One section of docs/divergences.md."""

    key: str                                   # "D1"
    title: str
    status: str                                # intended, pending
    cases: Mapping[str, frozenset[str]]        # case id -> aspects allowed to differ
    reason: str


_SECTION = re.compile(r"^## (D\d+)\. (.+)$", re.M)
_STATUS = re.compile(r"^Status: \*\*(\w+)\*\*", re.M)
_CASE = re.compile(r"^- `([a-z0-9-]+)`: ([a-z, ]+)$", re.M)


def documented(path: Path = DIVERGENCES_DOC, comparison: str = "",
               aspects: tuple[str, ...] = ASPECTS) -> list[Divergence]:
    """The divergences listed in docs/divergences.md.

    Each is a section ``## Dn. Title`` with a ``Status: **intended**`` (or ``**pending**``)
    line, prose giving the reason, and the corpus cases it explains, one per line as
    ``- `case-id`: aspect, aspect``. A section without cases is a divergence the comparison
    does not see (masked, like the SOA serial, or outside the corpus).

    Another comparison that judges its answers alike (same aspects) lists its cases as
    ``- `COMPARISON/case-id`: ...``, which this corpus does not read; ``comparison`` reads
    those instead, and only the sections that list some; a comparison that judges other parts
    of its answers names them (``aspects``).
    """
    text = path.read_text()
    out = []
    heads = list(_SECTION.finditer(text))
    case_line = _CASE if not comparison else re.compile(
        rf"^- `{re.escape(comparison)}/([a-z0-9-]+)`: ([a-z, ]+)$", re.M)
    for i, head in enumerate(heads):
        body = text[head.end():heads[i + 1].start() if i + 1 < len(heads) else len(text)]
        status = _STATUS.search(body)
        cases: dict[str, frozenset[str]] = {}
        for m in case_line.finditer(body):
            listed = frozenset(a.strip() for a in m.group(2).split(","))
            unknown = listed - set(aspects)
            if unknown:
                raise ValueError(f"{path}: {head.group(1)}: case {m.group(1)}: unknown aspect(s) "
                                 f"{sorted(unknown)}; known: {', '.join(aspects)}")
            if m.group(1) in cases:
                raise ValueError(f"{path}: {head.group(1)}: case {m.group(1)} listed twice")
            cases[m.group(1)] = listed
        if comparison and not cases:
            continue
        prose = case_line.sub("", body)
        prose = _STATUS.sub("", prose)
        reason = " ".join(line.strip() for line in prose.strip().splitlines()
                          if line.strip() and not line.startswith("Cases"))
        out.append(Divergence(head.group(1), head.group(2).strip(),
                              status.group(1) if status else "intended", cases, reason))
    return out


@dataclass
class Compared:
    """What both servers gave for one case of a comparison with aspects of its own (``- `NAME/
    case``` lines in docs/divergences.md), by aspect."""

    case: str
    coredns: dict[str, Any]
    interkube: dict[str, Any]

    def differs(self, aspects: tuple[str, ...]) -> list[str]:
        return [a for a in aspects if self.coredns[a] != self.interkube[a]]


def check_documented(results: list[Compared], comparison: str, aspects: tuple[str, ...], title: str,
                     report: Callable[[str], None], prefix: str = "") -> None:
    """Report the counts of ``results`` (the cases starting with ``prefix`` of ``comparison``);
    fail on a difference docs/divergences.md does not list, or on a case it lists (among those
    starting with ``prefix``) that no longer differs in exactly its aspects."""
    doc = {case: (d.key, listed) for d in documented(comparison=comparison, aspects=aspects)
           for case, listed in d.cases.items() if case.startswith(prefix)}
    differs = {r.case: r.differs(aspects) for r in results}
    different = [r for r in results if differs[r.case]]
    lines = [f"{title}: {len(results) - len(different)} identical, {len(different)} different (of {len(results)})"]
    lines += [f"  {r.case}: {', '.join(differs[r.case])} ({doc[r.case][0] if r.case in doc else 'UNDOCUMENTED'})"
              for r in different]
    report("\n".join(lines))
    undocumented = [r for r in different if set(differs[r.case]) - doc.get(r.case, ("", frozenset()))[1]]
    assert not undocumented, "\n".join(
        f"{r.case}:\n" + "\n".join(f"  {a}: coredns {r.coredns[a]!r}\n  {' ' * len(a)}  interkube {r.interkube[a]!r}"
                                   for a in differs[r.case]) for r in undocumented)
    stale = [case for case, (_, listed) in doc.items() if case not in differs or set(differs[case]) != listed]
    assert not stale, f"docs/divergences.md lists {comparison} differences that are gone (or differ otherwise): {stale}"


@dataclass
class Verdict:
    """What the comparison found, against what the document says."""

    results: list[Result]
    divergences: list[Divergence]
    #: Differences not in the document (case id, aspects).
    undocumented: list[Result] = field(default_factory=list)
    #: Documented cases that do not differ (any more) in what the document says.
    stale: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def identical(self) -> int:
        return sum(1 for r in self.results if not r.differs)

    def ok(self) -> bool:
        return not self.undocumented and not self.stale


def judge(results: list[Result], divergences: list[Divergence]) -> Verdict:
    allowed: dict[str, frozenset[str]] = {}
    owner: dict[str, str] = {}
    for d in divergences:
        for case, aspects in d.cases.items():
            if case in allowed:
                raise ValueError(f"case {case} is listed under {owner[case]} and {d.key}")
            allowed[case], owner[case] = aspects, d.key
    verdict = Verdict(results, divergences)
    ran = {r.case.id: r for r in results}
    for r in results:
        if set(r.differs) - allowed.get(r.case.id, frozenset()):
            verdict.undocumented.append(r)
    for case, aspects in allowed.items():
        r = ran.get(case)
        if r is None:
            if case not in ALL_CASE_IDS:
                verdict.stale.append((owner[case], case, "is not a case of the corpus"))
            continue  # a case of a part that did not run (e.g. MCS)
        if not r.differs:
            verdict.stale.append((owner[case], case, "answers identically now"))
        elif set(aspects) - set(r.differs):
            verdict.stale.append((owner[case], case, f"no longer differs in "
                                  f"{', '.join(sorted(set(aspects) - set(r.differs)))}"))
    return verdict


def report(verdict: Verdict) -> str:
    """The figures for the closing note: queries compared, identical, each divergence."""
    results = verdict.results
    mcs = [r for r in results if r.case.group == "mcs"]
    mcs_note = (f" (MCS clusterset.local: {len(mcs)}, identical {sum(1 for r in mcs if not r.differs)})"
                if mcs else " (MCS clusterset.local: not compared, no clusterset plugin)")
    lines = [f"differential: interkube vs CoreDNS {coredns_version()}",
             f"  queries compared: {len(results)}{mcs_note}",
             f"  identical:        {verdict.identical}",
             f"  different:        {len(results) - verdict.identical}"
             f" (documented: {len(results) - verdict.identical - len(verdict.undocumented)},"
             f" undocumented: {len(verdict.undocumented)})"]
    by_case = {r.case.id: r for r in results}
    lines.append("  divergences (docs/divergences.md):")
    for d in verdict.divergences:
        seen = [c for c in d.cases if c in by_case and by_case[c].differs]
        count = f"{len(seen)} quer{'y' if len(seen) == 1 else 'ies'}" if d.cases else "not counted"
        lines.append(f"    {d.key} [{d.status}] {d.title} ({count})")
        if seen:
            lines.append(f"        cases: {', '.join(seen)}")
    if verdict.undocumented:
        lines.append("  UNDOCUMENTED differences:")
        lines.extend("    " + r.describe().replace("\n", "\n    ") for r in verdict.undocumented)
    if verdict.stale:
        lines.append("  STALE entries in docs/divergences.md:")
        lines.extend(f"    {key} {case}: {why}" for key, case, why in verdict.stale)
    return "\n".join(lines)


def comparison_report(title: str, results: list[Result], undocumented: list[Result], comparison: str) -> str:
    """The figures of another comparison that lists its cases as ``COMPARISON/case`` (see
    :func:`documented`): questions compared, identical, each divergence with the cases seen."""
    identical = sum(1 for r in results if not r.differs)
    lines = [f"{title}: interkube vs CoreDNS {coredns_version()}",
             f"  queries compared: {len(results)}",
             f"  identical:        {identical}",
             f"  different:        {len(results) - identical} (documented: "
             f"{len(results) - identical - len(undocumented)}, undocumented: {len(undocumented)})"]
    by_case = {r.case.id: r for r in results}
    for d in documented(comparison=comparison):
        seen = [c for c in d.cases if c in by_case and by_case[c].differs]
        lines.append(f"    {d.key} [{d.status}] {d.title} ({len(seen)}): {', '.join(seen)}")
    lines.extend("  UNDOCUMENTED " + r.describe().replace("\n", "\n    ") for r in undocumented)
    return "\n".join(lines)


def check_comparison(title: str, results: list[Result], comparison: str,
                     peer_report: Callable[[str], None]) -> Verdict:
    """Judge another comparison's results against docs/divergences.md, report the figures, and
    fail on a difference the document does not list or a listed one that is gone."""
    verdict = judge(results, documented(comparison=comparison))
    peer_report(comparison_report(title, results, verdict.undocumented, comparison))
    assert not verdict.undocumented, (
        "answers differ from CoreDNS's in ways docs/divergences.md does not list; fix interkube or "
        "document the divergence:\n" + "\n".join(r.describe() for r in verdict.undocumented))
    assert not verdict.stale, "docs/divergences.md is out of date:\n" + "\n".join(
        f"{key} {comparison}/{case}: {why}" for key, case, why in verdict.stale)
    return verdict


def coredns_version() -> str:
    from testkit.peers import PEERS

    return PEERS["coredns"].version


def run(api: KubeAPI, coredns_binary: Path, workdir: Path, kube: KubeObjects | None = None,
        mcs: bool | None = None) -> tuple[World, list[Result]]:
    """Everything: the objects, both servers, every question (the MCS ones too when ``mcs``,
    by default when interkube has the clusterset plugin); the namespaces are removed after."""
    mcs = mcs_available() if mcs is None else mcs
    client = None
    if kube is None:
        client = api.client()
        kube = KubeObjects(client)
    world = populate(kube)
    try:
        if mcs:
            populate_mcs(kube, world)
        with servers(coredns_binary, api.kubeconfig, workdir, mcs) as pair:
            wait_until_synced(pair, world)
            return world, compare(pair, world, CASES + (MCS_CASES if mcs else ()))
    finally:
        for namespace in world.namespaces:
            api.delete_namespace(namespace)
        if client is not None:
            client.close()

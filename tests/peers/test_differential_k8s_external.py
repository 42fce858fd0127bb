"""k8s_external compared with CoreDNS 1.15: the same Corefile given to both (three server blocks:
the plain plugin with its own TTL beside the stanza's; ``headless`` with another ``apex`` and
``fallthrough`` to a zone file; reverse zones for PTR), both reading the test kube-apiserver, the
same questions, the answers compared as the kubernetes corpus compares them (rcode, flags, the
sections in any order, the SOA without its serial, TTLs).

The Services: LoadBalancers whose status (written with the admin client, as a cloud controller
would) holds ingress IPs of both families or a hostname, ClusterIP and NodePort Services with
``externalIPs``, headless Services with ready and not-ready endpoints (one without ports), a
Service with neither, an ExternalName. Every difference must be one that docs/divergences.md
lists under a ``- `k8s_external/CASE`: aspects`` line, and every one listed must still differ
so. The figures are printed at the end of the pytest run.
"""

from __future__ import annotations

import secrets
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client
from lightkube.resources.core_v1 import Service
from lightkube.types import PatchType

from testkit.coredns import CoreDNS
from testkit.kubeapi import KubeAPI, KubeObjects
from testkit.servers import free_port, interkube_process, process_output
from testkit.waiting import wait_until

from differential_corpus import Case, Result, World, ask, check_comparison, summarize

pytestmark = pytest.mark.peers

COMPARISON = "k8s_external"

#: Names under the second block's zone that the file behind k8s_external's fallthrough has.
FALLBACK_ZONE = """\
@ 300 IN SOA ns.hl.example. admin.hl.example. 1 7200 1800 86400 30
@ 300 IN NS ns.hl.example.
fell 300 IN A 192.0.2.99
"""


def corefile(p: str, kubeconfig: Path, fallback: Path) -> str:
    """Both servers' Corefile; ``p`` is ``:PORT`` for interkube (CoreDNS takes -dns.port)."""
    return textwrap.dedent(f"""\
        example.org{p} cluster.local{p} {{
            bind 127.0.0.1
            kubernetes cluster.local {{
                kubeconfig {kubeconfig}
                ttl 30
            }}
            k8s_external example.org {{
                ttl 10
            }}
        }}
        hl.example{p} cluster.test{p} {{
            bind 127.0.0.1
            kubernetes cluster.test {{
                kubeconfig {kubeconfig}
                endpoint_pod_names
            }}
            k8s_external hl.example {{
                headless
                apex ns
                fallthrough
            }}
            file {fallback} hl.example
        }}
        ptr.example{p} in-addr.arpa{p} ip6.arpa{p} {{
            bind 127.0.0.1
            kubernetes cluster.ptr {{
                kubeconfig {kubeconfig}
            }}
            k8s_external ptr.example in-addr.arpa ip6.arpa
        }}
        """)


def load_balancer(kube: KubeObjects, ns: str, name: str, ingress: list[dict[str, str]], **kw: Any) -> None:
    kube.service(ns, name, type="LoadBalancer", **kw)
    kube.client.patch(Service.Status, name, {"status": {"loadBalancer": {"ingress": ingress}}}, namespace=ns,
                      patch_type=PatchType.MERGE)


def populate(kube: KubeObjects) -> World:
    tag = secrets.token_hex(3)
    world = World(ns=kube.namespace(f"ext-{tag}"), podns="", empty=kube.namespace(f"ext-empty-{tag}"))
    ns = world.ns
    world.values = {"ns": ns, "empty": world.empty}
    web = [("http", 80, "TCP"), ("https", 443, "TCP")]
    load_balancer(kube, ns, "lb", [{"ip": "192.0.2.50"}, {"ip": "2001:db8::50"}], ports=web,
                  ip_families=["IPv4", "IPv6"], ip_family_policy="PreferDualStack")
    load_balancer(kube, ns, "lbhost", [{"hostname": "lb-1.elb.example.invalid"}], ports=[("http", 80, "TCP")])
    kube.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext", "namespace": ns},
                 "spec": {"externalIPs": ["192.0.2.51", "192.0.2.52"],
                          "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                                    {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}})
    kube.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "np", "namespace": ns},
                 "spec": {"type": "NodePort", "externalIPs": ["192.0.2.53"],
                          "ports": [{"port": 8080, "protocol": "TCP"}]}})
    kube.service(ns, "plain", ports=[("http", 80, "TCP")])
    kube.endpoint_slice(ns, "plain-a", service="plain", addresses=[
        {"addresses": ["10.1.9.1"], "conditions": {"ready": True}, "hostname": "web-0"}])
    kube.headless_service(ns, "hl", ports=[("http", 80, "TCP"), ("dns", 53, "UDP")])
    kube.endpoint_slice(ns, "hl-a", service="hl", addresses=[
        {"addresses": ["10.1.1.10"], "conditions": {"ready": True}, "hostname": "pet-0"},
        {"addresses": ["10.1.1.11"], "conditions": {"ready": True},
         "targetRef": {"kind": "Pod", "name": "hl-pod-b", "namespace": ns}},
        {"addresses": ["10.1.1.12"], "conditions": {"ready": False}, "hostname": "pet-2"},
    ], ports=[("http", 8080, "TCP"), ("dns", 53, "UDP")])
    kube.headless_service(ns, "hl-noports", ports=())
    kube.endpoint_slice(ns, "hl-noports-a", service="hl-noports", ports=(), addresses=[
        {"addresses": ["10.1.4.1"], "conditions": {"ready": True}, "hostname": "solo"}])
    kube.external_name_service(ns, "extname", "www.example.invalid")
    return world


def _cases() -> list[Case]:
    out: list[Case] = []

    def add(id: str, name: str, qtype: str, **kw: Any) -> None:
        out.append(Case(id, name, qtype, group=id.split("-")[0], **kw))

    z = "{ns}.example.org"
    for t in ("A", "AAAA", "SRV", "TXT", "MX", "CNAME", "PTR", "ANY"):
        add(f"lb-{t.lower()}", f"lb.{z}", t)
    add("lb-a-tcp", f"lb.{z}", "A", tcp=True)
    add("lb-a-edns", f"lb.{z}", "A", edns=1232)
    add("lb-a-mixed-case", "Lb.{ns}.Example.ORG", "A")
    add("lb-srv-port", f"_http._tcp.lb.{z}", "SRV")
    add("lb-srv-port-a", f"_https._tcp.lb.{z}", "A")
    add("lb-srv-wrong-proto", f"_http._udp.lb.{z}", "SRV")
    add("lb-srv-missing-port", f"_nope._tcp.lb.{z}", "SRV")
    add("lb-endpoint-label-a", f"anything.lb.{z}", "A")
    add("lb-too-long-a", f"a.b.c.lb.{z}", "A")
    for t in ("A", "AAAA", "SRV", "CNAME"):
        add(f"lbhost-{t.lower()}", f"lbhost.{z}", t)
    add("ext-a", f"ext.{z}", "A")
    add("ext-srv", f"ext.{z}", "SRV")
    add("ext-srv-udp", f"_dns._udp.ext.{z}", "SRV")
    add("ext-aaaa", f"ext.{z}", "AAAA")
    add("np-a", f"np.{z}", "A")
    add("np-srv", f"np.{z}", "SRV")
    add("plain-a", f"plain.{z}", "A")
    add("plain-endpoint-a", f"web-0.plain.{z}", "A")
    add("hl-a", f"hl.{z}", "A")
    add("hl-endpoint-a", f"pet-0.hl.{z}", "A")
    add("extname-a", f"extname.{z}", "A")
    add("ns-a", z, "A")
    add("ns-empty-a", "{empty}.example.org", "A")
    add("ns-missing-a", "no-such-ns.example.org", "A")
    add("svc-missing-a", f"missing.{z}", "A")
    add("apex-soa", "example.org.", "SOA")
    add("apex-soa-tcp", "example.org.", "SOA", tcp=True)
    add("apex-ns", "example.org.", "NS")
    add("apex-a", "example.org.", "A")
    add("apex-txt", "example.org.", "TXT")
    add("apex-mixed-case-ns", "Example.Org.", "NS")
    add("apex-mixed-case-soa", "EXAMPLE.org.", "SOA")
    add("apex-axfr", "example.org.", "AXFR", tcp=True)
    add("svc-missing-mixed-case-a", "Missing.{ns}.Example.Org", "A")
    add("sub-dns-a", "dns.example.org", "A")
    add("sub-ns1-a", "ns1.dns.example.org", "A")
    add("sub-ns1-aaaa", "ns1.dns.example.org", "AAAA")
    add("sub-ns1-txt", "ns1.dns.example.org", "TXT")
    add("sub-other-a", "x.dns.example.org", "A")
    add("sub-deeper-a", "a.ns1.dns.example.org", "A")
    add("kubernetes-lb-a", "lb.{ns}.svc.cluster.local", "A")
    # headless, another apex, fallthrough
    h = "{ns}.hl.example"
    add("headless-hl-a", f"hl.{h}", "A")
    add("headless-hl-aaaa", f"hl.{h}", "AAAA")
    add("headless-hl-srv", f"hl.{h}", "SRV")
    add("headless-hl-srv-port", f"_dns._udp.hl.{h}", "SRV")
    add("headless-endpoint-hostname-a", f"pet-0.hl.{h}", "A")
    add("headless-endpoint-podname-a", f"hl-pod-b.hl.{h}", "A")
    add("headless-endpoint-dashed-a", f"10-1-1-11.hl.{h}", "A")
    add("headless-endpoint-notready-a", f"pet-2.hl.{h}", "A")
    add("headless-endpoint-srv", f"pet-0.hl.{h}", "SRV")
    add("headless-noports-a", f"hl-noports.{h}", "A")
    add("headless-noports-srv", f"hl-noports.{h}", "SRV")
    add("headless-clusterip-endpoint-a", f"web-0.plain.{h}", "A")
    add("headless-clusterip-a", f"plain.{h}", "A")
    add("headless-lb-a", f"lb.{h}", "A")
    add("headless-fallthrough-a", "fell.hl.example", "A")
    add("headless-fallthrough-missing-a", "gone.hl.example", "A")
    add("headless-apex-soa", "hl.example.", "SOA")
    add("headless-apex-ns", "hl.example.", "NS")
    add("headless-sub-ns-a", "ns.hl.example", "A")
    add("headless-sub-ns1-a", "ns1.ns.hl.example", "A")
    add("headless-old-apex-a", "ns1.dns.hl.example", "A")
    # reverse
    add("ptr-v4", "50.2.0.192.in-addr.arpa.", "PTR")
    add("ptr-v4-second", "52.2.0.192.in-addr.arpa.", "PTR")
    add("ptr-v6", "0.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.", "PTR")
    add("ptr-unknown", "99.2.0.192.in-addr.arpa.", "PTR")
    add("ptr-partial", "2.0.192.in-addr.arpa.", "PTR")
    add("ptr-a", "50.2.0.192.in-addr.arpa.", "A")
    add("ptr-zone-lb-a", "lb.{ns}.ptr.example", "A")
    return out


CASES: tuple[Case, ...] = tuple(_cases())
assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"


@pytest.fixture(scope="module")
def results(kube_api: KubeAPI, kube_client: Client, coredns_binary: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Result]]:
    work = tmp_path_factory.mktemp("k8s-external")
    fallback = work / "db.hl.example"
    fallback.write_text(FALLBACK_ZONE)
    world = populate(KubeObjects(kube_client))
    try:
        port = free_port()
        (work / "Corefile").write_text(corefile(f":{port}", kube_api.kubeconfig, fallback))
        theirs = corefile("", kube_api.kubeconfig, fallback)
        with CoreDNS(coredns_binary, theirs, work / "coredns", probe_name="example.org.") as peer, \
                interkube_process(work / "Corefile", port) as proc:
            sentinels = [Case("sentinel-lb", "lb.{ns}.example.org", "A"),
                         Case("sentinel-hl", "hl-noports.{ns}.hl.example", "A"),
                         Case("sentinel-ptr", "53.2.0.192.in-addr.arpa.", "PTR")]

            def synced() -> bool:
                return all(reply is not None and reply.answer for p in (peer.port, port) for case in sentinels
                           for reply in [ask(p, case, world, timeout=1.0)])

            wait_until(synced, lambda: f"both answering the sentinels; interkube log:\n"
                       f"{process_output(proc)[-3000:]}", 60, every=0.2)  # type: ignore[arg-type]
            yield [Result(case, world.fill(case.name), summarize(ask(peer.port, case, world)),
                          summarize(ask(port, case, world))) for case in CASES]
    finally:
        for namespace in world.namespaces:
            kube_api.delete_namespace(namespace)


def test_k8s_external_answers_as_coredns_or_as_documented(
        results: list[Result], peer_report: Callable[[str], None]) -> None:
    check_comparison("k8s_external differential", results, COMPARISON, peer_report)


def test_the_comparison_means_something(results: list[Result]) -> None:
    # Both servers answering SERVFAIL everywhere would be "identical": most answers hold records.
    assert not [r.case.id for r in results if r.interkube["rcode"] in ("SERVFAIL", "no answer")]
    identical = [r for r in results if not r.differs]
    assert len(identical) >= 0.8 * len(results)
    assert sum(1 for r in identical if r.interkube["answer"]) >= 25

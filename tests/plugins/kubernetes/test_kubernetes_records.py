"""Records from a snapshot, rule by rule (Kubernetes DNS specification 1.1.0, as CoreDNS answers)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

NOERROR, NXDOMAIN, SERVFAIL = dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.SERVFAIL
#: The sample cluster (conftest.py); every test here reads it.
CLUSTER_YAML = Path(__file__).with_name("data") / "cluster.yaml"

Running = Any  # tests/plugins/conftest.py's Running: a server in the test's loop and its port
Serve = Callable[[str], Awaitable[Running]]


def corefile(*options: str, zones: str = "cluster.local in-addr.arpa ip6.arpa") -> str:
    body = "\n".join(f"        {o}" for o in (f"snapshot {CLUSTER_YAML}", *options))
    return f""".:PORT {{
    bind 127.0.0.1
    kubernetes {zones} {{
{body}
    }}
}}
"""


def rrs(msg: dns.message.Message, section: str = "answer") -> set[str]:
    """Each record as "name ttl TYPE rdata", lower case."""
    out = set()
    for rrset in getattr(msg, section):
        for rd in rrset:
            out.add(f"{rrset.name} {rrset.ttl} {dns.rdatatype.to_text(rrset.rdtype)} {rd}".lower())
    return out


def soa_in_authority(msg: dns.message.Message) -> bool:
    return any(r.rdtype == dns.rdatatype.SOA for r in msg.authority)


async def expect(k: Running, name: str, rdtype: str, rcode: int, answer: set[str] | None = None,
                 additional: set[str] | None = None) -> dns.message.Message:
    msg = await k.query(name, rdtype)
    assert msg.rcode() == rcode, f"{name} {rdtype}: {dns.rcode.to_text(msg.rcode())}\n{msg}"
    if rcode == SERVFAIL:
        return msg
    assert msg.flags & dns.flags.AA
    if answer is not None:
        assert rrs(msg) == answer, f"{name} {rdtype}\n{msg}"
    if not msg.answer:  # NXDOMAIN and NODATA carry the zone's SOA, as CoreDNS's do
        assert soa_in_authority(msg), f"{name} {rdtype}: no SOA in authority\n{msg}"
    if additional is not None:
        assert rrs(msg, "additional") == additional, f"{name} {rdtype}\n{msg}"
    return msg


Z = "svc.cluster.local."


@pytest.fixture
async def k(serve: Serve) -> Running:
    return await serve(corefile("pods verified"))


async def test_clusterip_a_and_dual_stack(k: Running) -> None:
    await expect(k, "web.app.svc.cluster.local", "A", NOERROR, {f"web.app.{Z} 5 a 10.96.0.10"})
    await expect(k, "web.app.svc.cluster.local", "AAAA", NOERROR, set())  # IPv4-only: NODATA
    await expect(k, "dual.app.svc.cluster.local", "A", NOERROR, {f"dual.app.{Z} 5 a 10.96.0.12"})
    await expect(k, "dual.app.svc.cluster.local", "AAAA", NOERROR, {f"dual.app.{Z} 5 aaaa fd00:10:96::12"})
    await expect(k, "v6only.app.svc.cluster.local", "AAAA", NOERROR, {f"v6only.app.{Z} 5 aaaa fd00:10:96::13"})
    await expect(k, "v6only.app.svc.cluster.local", "A", NOERROR, set())
    await expect(k, "missing.app.svc.cluster.local", "A", NXDOMAIN, set())
    await expect(k, "missing.app.svc.cluster.local", "AAAA", NXDOMAIN, set())


async def test_srv_for_named_ports_only(k: Running) -> None:
    await expect(k, "_http._tcp.web.app.svc.cluster.local", "SRV", NOERROR,
                 {f"_http._tcp.web.app.{Z} 5 srv 0 100 80 web.app.{Z}"}, {f"web.app.{Z} 5 a 10.96.0.10"})
    await expect(k, "_metrics._tcp.web.app.svc.cluster.local", "SRV", NOERROR,
                 {f"_metrics._tcp.web.app.{Z} 5 srv 0 100 9090 web.app.{Z}"})
    # The bare name answers every port (CoreDNS), weights split evenly.
    await expect(k, "web.app.svc.cluster.local", "SRV", NOERROR,
                 {f"web.app.{Z} 5 srv 0 50 80 web.app.{Z}", f"web.app.{Z} 5 srv 0 50 9090 web.app.{Z}"})
    # Wrong port name or protocol: the name does not exist.
    await expect(k, "_grpc._tcp.web.app.svc.cluster.local", "SRV", NXDOMAIN)
    await expect(k, "_http._udp.web.app.svc.cluster.local", "SRV", NXDOMAIN)
    # An unnamed port has no SRV of its own; the bare name still lists it.
    await expect(k, "single.app.svc.cluster.local", "A", NOERROR, {f"single.app.{Z} 5 a 10.96.0.11"})
    await expect(k, "_http._tcp.single.app.svc.cluster.local", "SRV", NXDOMAIN)
    await expect(k, "single.app.svc.cluster.local", "SRV", NOERROR,
                 {f"single.app.{Z} 5 srv 0 100 8080 single.app.{Z}"})
    # Dual-stack: one SRV per port, both addresses in additional.
    await expect(k, "_http._tcp.dual.app.svc.cluster.local", "SRV", NOERROR,
                 {f"_http._tcp.dual.app.{Z} 5 srv 0 50 80 dual.app.{Z}"},
                 {f"dual.app.{Z} 5 a 10.96.0.12", f"dual.app.{Z} 5 aaaa fd00:10:96::12"})


async def test_ptr_for_cluster_ips_and_endpoints(k: Running) -> None:
    await expect(k, "10.0.96.10.in-addr.arpa", "PTR", NOERROR, {f"10.0.96.10.in-addr.arpa. 5 ptr web.app.{Z}"})
    v6 = "2.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa."
    await expect(k, v6, "PTR", NOERROR, {f"{v6} 5 ptr dual.app.{Z}"})
    # Endpoints: of a ClusterIP Service (dashed IP), of a headless one (hostname), IPv6.
    await expect(k, "5.1.244.10.in-addr.arpa", "PTR", NOERROR,
                 {f"5.1.244.10.in-addr.arpa. 5 ptr 10-244-1-5.web.app.{Z}"})
    await expect(k, "10.1.244.10.in-addr.arpa", "PTR", NOERROR,
                 {f"10.1.244.10.in-addr.arpa. 5 ptr pet-0.hl.app.{Z}"})
    v6ep = "1.0.0.0.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.4.4.2.0.0.1.0.0.0.0.d.f.ip6.arpa."
    await expect(k, v6ep, "PTR", NOERROR, {f"{v6ep} 5 ptr a.hl-ds.app.{Z}"})
    # Not ready, unknown, or not a whole address: NXDOMAIN.
    await expect(k, "12.1.244.10.in-addr.arpa", "PTR", NXDOMAIN)
    await expect(k, "99.99.99.10.in-addr.arpa", "PTR", NXDOMAIN)
    await expect(k, "10.in-addr.arpa", "PTR", NXDOMAIN)
    # A PTR question for a forward name that exists: NODATA.
    await expect(k, "web.app.svc.cluster.local", "PTR", NOERROR, set())


async def test_headless_services(k: Running) -> None:
    await expect(k, "hl.app.svc.cluster.local", "A", NOERROR,
                 {f"hl.app.{Z} 5 a 10.244.1.10", f"hl.app.{Z} 5 a 10.244.1.11"})  # not the unready .12
    await expect(k, "hl.app.svc.cluster.local", "AAAA", NOERROR, set())
    await expect(k, "pet-0.hl.app.svc.cluster.local", "A", NOERROR, {f"pet-0.hl.app.{Z} 5 a 10.244.1.10"})
    await expect(k, "10-244-1-11.hl.app.svc.cluster.local", "A", NOERROR,
                 {f"10-244-1-11.hl.app.{Z} 5 a 10.244.1.11"})
    await expect(k, "10-244-1-12.hl.app.svc.cluster.local", "A", NXDOMAIN)
    await expect(k, "web-7d9f.hl.app.svc.cluster.local", "A", NXDOMAIN)  # pod names need endpoint_pod_names
    # SRV: N ready endpoints x M named ports, targets by endpoint name, addresses in additional.
    await expect(k, "_http._tcp.hl.app.svc.cluster.local", "SRV", NOERROR,
                 {f"_http._tcp.hl.app.{Z} 5 srv 0 50 8080 pet-0.hl.app.{Z}",
                  f"_http._tcp.hl.app.{Z} 5 srv 0 50 8080 10-244-1-11.hl.app.{Z}"},
                 {f"pet-0.hl.app.{Z} 5 a 10.244.1.10", f"10-244-1-11.hl.app.{Z} 5 a 10.244.1.11"})
    await expect(k, "_dns._udp.hl.app.svc.cluster.local", "SRV", NOERROR,
                 {f"_dns._udp.hl.app.{Z} 5 srv 0 50 53 pet-0.hl.app.{Z}",
                  f"_dns._udp.hl.app.{Z} 5 srv 0 50 53 10-244-1-11.hl.app.{Z}"})
    msg = await expect(k, "hl.app.svc.cluster.local", "SRV", NOERROR)
    assert len(rrs(msg)) == 4 and all(" srv 0 25 " in r for r in rrs(msg))
    # An endpoint name of a ClusterIP Service answers too (CoreDNS).
    await expect(k, "10-244-1-5.web.app.svc.cluster.local", "A", NOERROR,
                 {f"10-244-1-5.web.app.{Z} 5 a 10.244.1.5"})


async def test_headless_corner_cases(k: Running) -> None:
    await expect(k, "hl-ds.app.svc.cluster.local", "A", NOERROR, {f"hl-ds.app.{Z} 5 a 10.244.2.1"})
    await expect(k, "hl-ds.app.svc.cluster.local", "AAAA", NOERROR, {f"hl-ds.app.{Z} 5 aaaa fd00:10:244::2:1"})
    await expect(k, "a.hl-ds.app.svc.cluster.local", "AAAA", NOERROR, {f"a.hl-ds.app.{Z} 5 aaaa fd00:10:244::2:1"})
    # No endpoint ready: NXDOMAIN (the specification), for every type.
    await expect(k, "hl-none.app.svc.cluster.local", "A", NXDOMAIN)
    await expect(k, "hl-none.app.svc.cluster.local", "SRV", NXDOMAIN)
    await expect(k, "hl-none.app.svc.cluster.local", "TXT", NXDOMAIN)  # as CoreDNS: no name, no TXT
    # No ports: addresses, but no SRV records.
    await expect(k, "hl-noports.app.svc.cluster.local", "A", NOERROR, {f"hl-noports.app.{Z} 5 a 10.244.4.1"})
    await expect(k, "solo.hl-noports.app.svc.cluster.local", "A", NOERROR,
                 {f"solo.hl-noports.app.{Z} 5 a 10.244.4.1"})
    await expect(k, "hl-noports.app.svc.cluster.local", "SRV", NOERROR, set())
    # publishNotReadyAddresses: the unready endpoint is served.
    await expect(k, "pub.app.svc.cluster.local", "A", NOERROR, {f"pub.app.{Z} 5 a 10.244.5.1"})
    await expect(k, "p0.pub.app.svc.cluster.local", "A", NOERROR, {f"p0.pub.app.{Z} 5 a 10.244.5.1"})
    await expect(k, "1.5.244.10.in-addr.arpa", "PTR", NOERROR, {f"1.5.244.10.in-addr.arpa. 5 ptr p0.pub.app.{Z}"})


async def test_external_name(k: Running) -> None:
    await expect(k, "ext.app.svc.cluster.local", "A", NOERROR, {f"ext.app.{Z} 5 cname www.example.com."})
    await expect(k, "ext.app.svc.cluster.local", "AAAA", NOERROR, {f"ext.app.{Z} 5 cname www.example.com."})
    await expect(k, "ext.app.svc.cluster.local", "CNAME", NOERROR, {f"ext.app.{Z} 5 cname www.example.com."})
    await expect(k, "ext.app.svc.cluster.local", "SRV", NOERROR, set())
    await expect(k, "_http._tcp.ext.app.svc.cluster.local", "A", NXDOMAIN)
    # A target in our zone: the CNAME and the target's records; a missing target: NODATA.
    await expect(k, "ext-in.app.svc.cluster.local", "A", NOERROR,
                 {f"ext-in.app.{Z} 5 cname web.app.{Z}", f"web.app.{Z} 5 a 10.96.0.10"})
    await expect(k, "ext-in.app.svc.cluster.local", "AAAA", NOERROR, set())
    await expect(k, "ext-gone.app.svc.cluster.local", "A", NOERROR, set())
    # CNAME questions about other Services: NODATA.
    await expect(k, "web.app.svc.cluster.local", "CNAME", NOERROR, set())


async def test_pods_verified(k: Running) -> None:
    await expect(k, "10-244-1-5.app.pod.cluster.local", "A", NOERROR,
                 {"10-244-1-5.app.pod.cluster.local. 5 a 10.244.1.5"})
    await expect(k, "10-244-1-6.app.pod.cluster.local", "A", NXDOMAIN)       # no such pod
    await expect(k, "10-244-1-5.default.pod.cluster.local", "A", NXDOMAIN)   # another namespace
    await expect(k, "10-244-1-99.app.pod.cluster.local", "A", NXDOMAIN)      # terminating
    await expect(k, "fd00-10-244--99.app.pod.cluster.local", "AAAA", NOERROR,
                 {"fd00-10-244--99.app.pod.cluster.local. 5 aaaa fd00:10:244::99"})
    await expect(k, "10-244-1-5.app.pod.cluster.local", "AAAA", NOERROR, set())
    await expect(k, "app.pod.cluster.local", "A", NOERROR, set())


async def test_pods_insecure_and_disabled(serve: Serve) -> None:
    insecure = await serve(corefile("pods insecure"))
    await expect(insecure, "1-2-3-4.app.pod.cluster.local", "A", NOERROR,
                 {"1-2-3-4.app.pod.cluster.local. 5 a 1.2.3.4"})
    await expect(insecure, "fd00--1.app.pod.cluster.local", "AAAA", NOERROR,
                 {"fd00--1.app.pod.cluster.local. 5 aaaa fd00::1"})
    await expect(insecure, "not-an-ip.app.pod.cluster.local", "A", NXDOMAIN)
    await expect(insecure, "1-2-3-4.nowhere.pod.cluster.local", "A", NXDOMAIN)  # namespace unknown
    disabled = await serve(corefile())
    await expect(disabled, "10-244-1-5.app.pod.cluster.local", "A", NXDOMAIN)
    await expect(disabled, "app.pod.cluster.local", "A", NXDOMAIN)
    await expect(disabled, "pod.cluster.local", "A", NOERROR, set())


async def test_apex_schema_version_and_empty_non_terminals(k: Running) -> None:
    msg = await expect(k, "cluster.local", "SOA", NOERROR)
    [soa] = rrs(msg)
    assert soa.startswith("cluster.local. 5 soa ns.dns.cluster.local. hostmaster.cluster.local. ")
    assert soa.endswith(" 7200 1800 86400 5")
    # Served on loopback only, this server has no address to give as the zone's name server
    # (CoreDNS leaves loopback out too): NODATA. See test_kubernetes_lookup.py for the NS records.
    await expect(k, "cluster.local", "NS", NOERROR, set())
    await expect(k, "cluster.local", "A", NOERROR, set())
    await expect(k, "dns-version.cluster.local", "TXT", NOERROR, {"dns-version.cluster.local. 28800 txt \"1.1.0\""})
    await expect(k, "dns-version.cluster.local", "A", NXDOMAIN)
    await expect(k, "web.app.svc.cluster.local", "TXT", NOERROR, set())
    # svc.<zone>, pod.<zone> and <ns>.svc.<zone> exist without records; other names do not.
    await expect(k, "svc.cluster.local", "A", NOERROR, set())
    await expect(k, "app.svc.cluster.local", "A", NOERROR, set())
    await expect(k, "app.svc.cluster.local", "SRV", NOERROR, set())
    await expect(k, "nowhere.svc.cluster.local", "A", NXDOMAIN)
    await expect(k, "else.cluster.local", "A", NXDOMAIN)
    await expect(k, "a.b.c.web.app.svc.cluster.local", "A", NXDOMAIN)  # too many labels
    # Types without records here: NODATA for names that exist, NXDOMAIN for the rest.
    await expect(k, "web.app.svc.cluster.local", "MX", NOERROR, set())
    await expect(k, "missing.app.svc.cluster.local", "MX", NXDOMAIN)
    await expect(k, "web.app.svc.cluster.local", "SOA", NOERROR, set())
    await expect(k, "web.app.svc.cluster.local", "NS", NOERROR, set())


async def test_names_are_case_insensitive_and_echoed(k: Running) -> None:
    msg = await k.query("WEB.App.SVC.Cluster.Local", "A")
    assert msg.rcode() == NOERROR
    assert msg.answer[0].name.to_text() == "WEB.App.SVC.Cluster.Local."
    assert [rd.address for rd in msg.answer[0]] == ["10.96.0.10"]
    again = await k.query("web.app.svc.cluster.local", "A")  # the same template, the other spelling
    assert again.answer[0].name.to_text() == "web.app.svc.cluster.local."


async def test_ttl_option_and_soa_ttl_cap(serve: Serve) -> None:
    k = await serve(corefile("ttl 600"))
    await expect(k, "web.app.svc.cluster.local", "A", NOERROR, {f"web.app.{Z} 600 a 10.96.0.10"})
    msg = await expect(k, "nope.app.svc.cluster.local", "A", NXDOMAIN)
    [soa] = msg.authority
    assert soa.ttl == 300 and soa[0].minimum == 600  # CoreDNS caps the SOA's own TTL at 300
    zero = await serve(corefile("ttl 0"))
    await expect(zero, "web.app.svc.cluster.local", "A", NOERROR, {f"web.app.{Z} 0 a 10.96.0.10"})


async def test_endpoint_pod_names(serve: Serve) -> None:
    k = await serve(corefile("endpoint_pod_names"))
    await expect(k, "web-7d9f.hl.app.svc.cluster.local", "A", NOERROR, {f"web-7d9f.hl.app.{Z} 5 a 10.244.1.11"})
    await expect(k, "pet-0.hl.app.svc.cluster.local", "A", NOERROR)  # a hostname still wins
    await expect(k, "10-244-1-11.hl.app.svc.cluster.local", "A", NXDOMAIN)
    await expect(k, "11.1.244.10.in-addr.arpa", "PTR", NOERROR,
                 {f"11.1.244.10.in-addr.arpa. 5 ptr web-7d9f.hl.app.{Z}"})
    # An endpoint without a pod keeps its dashed address.
    await expect(k, "10-244-4-1.hl-noports.app.svc.cluster.local", "A", NXDOMAIN)  # it has a hostname


async def test_fallthrough(serve: Serve) -> None:
    k = await serve(corefile("fallthrough in-addr.arpa ip6.arpa"))
    # Covered names go to the next plugin (here the end of the chain: SERVFAIL).
    await expect(k, "99.99.99.10.in-addr.arpa", "PTR", SERVFAIL)
    await expect(k, "nope.app.svc.cluster.local", "A", NXDOMAIN)
    everything = await serve(corefile("fallthrough"))
    await expect(everything, "nope.app.svc.cluster.local", "A", SERVFAIL)
    await expect(everything, "web.app.svc.cluster.local", "A", NOERROR)  # answers are not passed on
    await expect(everything, "web.app.svc.cluster.local", "AAAA", NOERROR, set())  # nor NODATA


async def test_ignore_empty_service_and_noendpoints(serve: Serve) -> None:
    k = await serve(corefile("ignore empty_service"))
    await expect(k, "idle.app.svc.cluster.local", "A", NXDOMAIN)
    await expect(k, "web.app.svc.cluster.local", "A", NOERROR, {f"web.app.{Z} 5 a 10.96.0.10"})
    await expect(k, "hl.app.svc.cluster.local", "A", NOERROR)  # headless is not affected
    n = await serve(corefile("noendpoints"))
    await expect(n, "web.app.svc.cluster.local", "A", NOERROR, {f"web.app.{Z} 5 a 10.96.0.10"})
    await expect(n, "hl.app.svc.cluster.local", "A", NXDOMAIN)
    await expect(n, "pet-0.hl.app.svc.cluster.local", "A", NXDOMAIN)
    await expect(n, "10.1.244.10.in-addr.arpa", "PTR", NXDOMAIN)


async def test_namespaces_and_labels_filter(serve: Serve) -> None:
    k = await serve(corefile("namespaces app team"))
    await expect(k, "web.app.svc.cluster.local", "A", NOERROR)
    await expect(k, "kubernetes.default.svc.cluster.local", "A", NXDOMAIN)
    await expect(k, "default.svc.cluster.local", "A", NXDOMAIN)
    await expect(k, "1.0.96.10.in-addr.arpa", "PTR", NXDOMAIN)
    labelled = await serve(corefile("labels tier in (front, edge)"))
    await expect(labelled, "api.team.svc.cluster.local", "A", NOERROR, {f"api.team.{Z} 5 a 10.96.0.30"})
    await expect(labelled, "db.team.svc.cluster.local", "A", NXDOMAIN)
    await expect(labelled, "web.app.svc.cluster.local", "A", NXDOMAIN)


async def test_reverse_zone_from_a_cidr_serves_only_that_range(serve: Serve) -> None:
    k = await serve(corefile(zones="cluster.local 10.96.0.0/16"))
    await expect(k, "10.0.96.10.in-addr.arpa", "PTR", NOERROR, {f"10.0.96.10.in-addr.arpa. 5 ptr web.app.{Z}"})
    msg = await k.query("5.1.244.10.in-addr.arpa", "PTR")
    assert msg.rcode() == SERVFAIL  # outside the stanza's zones: the next plugin (none) answers


async def test_malformed_objects_are_left_out_and_counted(serve: Serve, tmp_path: Path,
                                                          cluster_objects: list[dict[str, Any]],
                                                          malformed_objects: list[dict[str, Any]],
                                                          snapshot_writer: Callable[..., Path]) -> None:
    from prometheus_client import generate_latest

    path = snapshot_writer(tmp_path / "c.yaml", cluster_objects + malformed_objects)
    k = await serve(corefile().replace(str(CLUSTER_YAML), str(path)))
    await expect(k, "web.app.svc.cluster.local", "A", NOERROR, {f"web.app.{Z} 5 a 10.96.0.10"})
    await expect(k, "badport.app.svc.cluster.local", "A", NXDOMAIN)
    metrics = generate_latest(k.server.services.metrics.registry).decode()
    assert 'interkube_kubernetes_objects_skipped_total{cluster="local",resource="services"} 2.0' in metrics
    assert 'interkube_kubernetes_objects_skipped_total{cluster="local",resource="endpointslices"} 1.0' in metrics

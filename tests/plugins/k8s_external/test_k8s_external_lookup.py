"""The lookup on its own: the name server's own addresses, the apex label, what answers depend on."""

from __future__ import annotations

from pathlib import Path

import dns.name
import dns.rdatatype

from interkube.kube.cluster import Cluster
from interkube.kube.filters import Filters
from interkube.kube.index import ClusterIndex, DepKey
from interkube.kube.snapshot import SnapshotSource, build_index
from interkube.plugins.k8s_external.lookup import ExternalLookup, Options
from testkit.fakekube import endpoint_slice, service, write_snapshot

from k8s_external_data import objects

ZONE = "example.org."


def index_of(path: Path) -> ClusterIndex:
    source = SnapshotSource((str(path),), Filters())
    return build_index(source.paths, source.filters, Cluster("t", source))


def texts(rrsets: list[object]) -> set[str]:
    return {f"{r.name} {dns.rdatatype.to_text(r.rdtype)} {rd}" for r in rrsets for rd in r}  # type: ignore[attr-defined]


def lookup(index: ClusterIndex, deps: set[DepKey] | None = None, **options: object) -> ExternalLookup:
    return ExternalLookup(index.view(set() if deps is None else deps), ZONE, Options(**options), 1)  # type: ignore[arg-type]


def name(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


def test_the_name_server_is_the_load_balancer_of_the_service_whose_endpoint_we_are(cluster: Path) -> None:
    index = index_of(cluster)
    deps: set[DepKey] = set()
    ours = lookup(index, deps, local_ips=("10.244.0.53",))
    outcome, _ = ours.answer(name(ZONE), dns.rdatatype.NS)
    assert texts(outcome.answer) == {"example.org. NS ns1.dns.example.org."}
    assert texts(outcome.additional) == {"ns1.dns.example.org. A 192.0.2.53"}
    assert ("i", "10.244.0.53") in deps  # the answer changes with that endpoint
    outcome, _ = ours.answer(name("ns1.dns.example.org."), dns.rdatatype.A)
    assert texts(outcome.answer) == {"ns1.dns.example.org. A 192.0.2.53"}
    # Not an endpoint of any Service: this server's own address.
    other = lookup(index, local_ips=("192.0.2.99", "2001:db8::99"))
    outcome, _ = other.answer(name("ns1.dns.example.org."), dns.rdatatype.AAAA)
    assert texts(outcome.answer) == {"ns1.dns.example.org. AAAA 2001:db8::99"}


def test_with_headless_a_headless_name_servers_endpoints(tmp_path: Path) -> None:
    path = write_snapshot(tmp_path / "c.yaml", [
        service("kube-system", "dns", headless=True, ports=[("dns", 53, "UDP")]),
        endpoint_slice("kube-system", "dns-a", "dns", [{"ip": "10.244.0.53"}, {"ip": "10.244.0.54"}],
                       ports=[("dns", 53, "UDP")])])
    index = index_of(path)
    outcome, _ = lookup(index, local_ips=("10.244.0.53",), headless=True).answer(name(ZONE), dns.rdatatype.NS)
    assert texts(outcome.additional) == {"ns1.dns.example.org. A 10.244.0.53", "ns1.dns.example.org. A 10.244.0.54"}
    # Without `headless`, a headless Service has no external address: none at all (CoreDNS).
    outcome, _ = lookup(index, local_ips=("10.244.0.53",)).answer(name(ZONE), dns.rdatatype.NS)
    assert texts(outcome.answer) == {"example.org. NS ns1.dns.example.org."} and not outcome.additional


def test_a_two_label_apex_counts_as_coredns_counts_it(cluster: Path) -> None:
    ours = lookup(index_of(cluster), apex="ns.x")
    soa, fall = ours.answer(name("ns.x.example.org."), dns.rdatatype.A)
    assert (soa.name_error, fall) == (True, False)  # two labels, the first not ns1
    assert ours.answer(name("x.example.org."), dns.rdatatype.A)[0].name_error  # no such namespace
    assert texts([ours.soa()]) == {"example.org. SOA ns1.ns.x.example.org. hostmaster.ns.x.example.org. "
                                   "1 7200 1800 86400 5"}


def test_what_answers_read(cluster: Path) -> None:
    index = index_of(cluster)
    deps: set[DepKey] = set()
    lookup(index, deps).answer(name("web.shop.example.org."), dns.rdatatype.A)
    assert deps == {("n", "shop"), ("s", "shop", "web")}
    deps = set()
    lookup(index, deps).answer(name("10.2.0.192.in-addr.arpa."), dns.rdatatype.PTR)
    assert deps == {("e", "192.0.2.10")}
    assert index.services_external_at("192.0.2.10")[0].name == "web"
    assert index.services_external_at("10.96.1.10") == ()  # a ClusterIP is no external address


def test_the_records_keep_external_addresses_of_every_kind(cluster: Path) -> None:
    index = index_of(cluster)
    web, host, ext = (index.service("shop", n) for n in ("web", "host", "ext"))
    assert web is not None and web.external_ips == ("192.0.2.10", "2001:db8::10")
    assert host is not None and host.external_ips == ("lb-1.elb.example.com",)
    assert ext is not None and ext.external_ips == ("192.0.2.11",)
    assert len(objects()) == 13

"""The lookup on its own: name parsing, the zone's name servers, CNAME chains, dependencies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dns.name
import dns.rdatatype

from interkube.kube.cluster import Cluster
from interkube.kube.filters import Filters
from interkube.kube.index import ClusterIndex
from interkube.kube.lookup import INVALID, Lookup, Options, Request, parse_request
from interkube.kube.snapshot import SnapshotSource, build_index
from testkit.fakekube import endpoint_slice, service

ZONE = "cluster.local."


def index_of(objects: list[dict[str, Any]], tmp_path: Path, writer: Any) -> ClusterIndex:
    path = writer(tmp_path / "c.yaml", objects)
    source = SnapshotSource((str(path),), Filters(pods=True))
    return build_index(source.paths, source.filters, Cluster("t", source))


def texts(rrsets: list[Any]) -> set[str]:
    return {f"{r.name} {dns.rdatatype.to_text(r.rdtype)} {rd}" for r in rrsets for rd in r}


def test_parse_request_follows_coredns() -> None:
    assert parse_request([]) == Request()
    assert parse_request(["svc"]) == Request() and parse_request(["pod"]) == Request()
    assert parse_request(["app", "svc"]) == Request(kind="svc", namespace="app")
    assert parse_request(["web", "app", "svc"]) == Request(kind="svc", namespace="app", service="web")
    assert parse_request(["pet-0", "web", "app", "svc"]).endpoint == "pet-0"
    r = parse_request(["_http", "_tcp", "web", "app", "svc"])
    assert (r.port, r.protocol, r.service) == ("http", "tcp", "web")
    # Two labels left of the service are port and protocol, underscores or not (CoreDNS).
    assert parse_request(["a", "b", "web", "app", "svc"]).port == "a"
    assert parse_request(["x", "a", "b", "web", "app", "svc"]) is INVALID
    assert parse_request(["web", "app", "other"]) is INVALID


def test_name_servers_are_the_services_whose_endpoint_we_are(tmp_path: Path, snapshot_writer: Any,
                                                             cluster_objects: list[dict[str, Any]]) -> None:
    index = index_of(cluster_objects, tmp_path, snapshot_writer)
    deps: set[tuple[str, ...]] = set()
    ours = Lookup(index.view(deps), ZONE, Options(local_ips=("10.244.0.53",)))
    apex = dns.name.from_text(ZONE)
    outcome = ours.answer(apex, dns.rdatatype.NS)
    assert texts(outcome.answer) == {"cluster.local. NS kube-dns.kube-system.svc.cluster.local."}
    assert texts(outcome.additional) == {"kube-dns.kube-system.svc.cluster.local. A 10.96.0.53"}
    assert ("i", "10.244.0.53") in deps  # the answer changes with that endpoint
    # Not an endpoint of any Service: ns.dns.<zone> with our own address.
    other = Lookup(index.view(set()), ZONE, Options(local_ips=("192.0.2.53", "2001:db8::53")))
    outcome = other.answer(apex, dns.rdatatype.NS)
    assert texts(outcome.answer) == {"cluster.local. NS ns.dns.cluster.local."}
    assert texts(outcome.additional) == {"ns.dns.cluster.local. A 192.0.2.53",
                                         "ns.dns.cluster.local. AAAA 2001:db8::53"}
    ns_dns = dns.name.from_text("ns.dns." + ZONE)
    assert texts(other.answer(ns_dns, dns.rdatatype.A).answer) == {"ns.dns.cluster.local. A 192.0.2.53"}
    assert texts(other.answer(ns_dns, dns.rdatatype.AAAA).answer) == {"ns.dns.cluster.local. AAAA 2001:db8::53"}
    # ns.dns exists, dns.<zone> does not (CoreDNS's quirk).
    assert not other.answer(ns_dns, dns.rdatatype.TXT).name_error
    assert other.answer(dns.name.from_text("dns." + ZONE), dns.rdatatype.A).name_error


def test_cname_loops_end(tmp_path: Path, snapshot_writer: Any) -> None:
    index = index_of([service("a", "one", external_name="two.a.svc.cluster.local", ports=[]),
                      service("a", "two", external_name="one.a.svc.cluster.local", ports=[]),
                      service("a", "self", external_name="self.a.svc.cluster.local", ports=[])],
                     tmp_path, snapshot_writer)
    lookup = Lookup(index.view(set()), ZONE, Options())
    for name in ("one.a.svc.cluster.local.", "self.a.svc.cluster.local."):
        outcome = lookup.answer(dns.name.from_text(name), dns.rdatatype.A)
        assert not outcome.name_error and outcome.answer == []


def test_dependencies_name_what_an_answer_read(tmp_path: Path, snapshot_writer: Any) -> None:
    index = index_of([service("a", "hl", headless=True),
                      endpoint_slice("a", "hl-1", "hl", [{"ip": "10.0.0.1"}])], tmp_path, snapshot_writer)
    deps: set[tuple[str, ...]] = set()
    Lookup(index.view(deps), ZONE, Options()).answer(dns.name.from_text("hl.a.svc.cluster.local."), dns.rdatatype.A)
    assert deps == {("n", "a"), ("s", "a", "hl")}
    deps.clear()
    Lookup(index.view(deps), ZONE, Options()).answer(dns.name.from_text("1.0.0.10.in-addr.arpa."), dns.rdatatype.PTR)
    assert deps == {("i", "10.0.0.1"), ("s", "a", "hl")}

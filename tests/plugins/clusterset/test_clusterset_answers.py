"""The clusterset through real sockets: three snapshot clusters, cluster.all and MCS clusterset.local."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import yaml
from prometheus_client import generate_latest

from interkube.kube.cluster import Cluster
from interkube.kube.filters import Filters
from interkube.kube.snapshot import SnapshotSource
from testkit.fakekube import endpoint_slice, write_snapshot

from clusterset_data import ALL, MCS, cluster_objects, corefile

Running = Any  # tests/plugins/conftest.py's Running: a server in the test's loop
Serve = Callable[[str], Awaitable[Running]]

UNION = """    clusterset cluster.union {
        local east
        policy all
    }
    clusterset cluster.vips {
        local east
        policy all
        remote clusterip
    }
"""


def addresses(msg: dns.message.Message) -> set[str]:
    return {rd.address for rrset in msg.answer if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
            for rd in rrset}


def rdatas(msg: dns.message.Message, section: str = "answer") -> set[str]:
    return {f"{rrset.name} {rd}" for rrset in getattr(msg, section) for rd in rrset}


async def test_cluster_all(serve: Serve, snapshots: dict[str, Path]) -> None:
    k = await serve(corefile(snapshots, ALL + UNION))
    msg = await k.query("WEB.shop.svc.Cluster.All", "A")
    assert msg.rcode() == dns.rcode.NOERROR and msg.flags & dns.flags.AA
    assert rdatas(msg) == {"WEB.shop.svc.Cluster.All. 10.96.1.10"}  # local-first; the client's case kept
    assert addresses(await k.query("web.shop.svc.cluster.union", "A")) == {"10.96.1.10", "10.244.2.5", "10.244.2.6",
                                                                          "10.244.3.5"}
    assert addresses(await k.query("web.shop.svc.cluster.vips", "A")) == {"10.96.1.10", "10.96.2.10", "10.96.3.10"}
    assert addresses(await k.query("web.shop.svc.cluster.union", "AAAA", tcp=True)) == {"fd00:96:1::10",
                                                                                       "fd00:244:2::5"}
    srv = await k.query("_pg._tcp.db.shop.svc.cluster.union", "SRV")
    assert {rd.target.to_text() for rrset in srv.answer for rd in rrset} == {
        f"{t}.db.shop.svc.cluster.union." for t in ("db-0.east", "db-0.west", "db-1.west", "db-0.central.eu")}
    assert "db-0.central.eu.db.shop.svc.cluster.union. 10.244.3.40" in rdatas(srv, "additional")
    assert addresses(await k.query("db-0.central.eu.db.shop.svc.cluster.all", "A")) == {"10.244.3.40"}
    nx = await k.query("nope.shop.svc.cluster.all", "A")
    assert nx.rcode() == dns.rcode.NXDOMAIN and nx.authority[0].rdtype == dns.rdatatype.SOA
    assert (await k.query("west.db.shop.svc.cluster.all", "A")).rcode() == dns.rcode.NXDOMAIN
    cname = await k.query("ext.shop.svc.cluster.all", "A")
    assert rdatas(cname) == {"ext.shop.svc.cluster.all. www.example.com."}
    assert (await k.query("cluster.all", "AXFR", tcp=True)).rcode() == dns.rcode.REFUSED
    # Zones of the block the clusterset does not hold go on down the chain (here: its end).
    assert (await k.query("web.shop.svc.elsewhere", "A")).rcode() == dns.rcode.SERVFAIL


async def test_mcs_clusterset_local(serve: Serve, snapshots: dict[str, Path]) -> None:
    k = await serve(corefile(snapshots, MCS))
    front = await k.query("front.mcs.svc.clusterset.local", "A")
    assert rdatas(front) == {"front.mcs.svc.clusterset.local. 10.200.0.10"}
    assert addresses(await k.query("front.mcs.svc.clusterset.local", "AAAA")) == {"fd00:200::10"}
    srv = await k.query("_http._tcp.front.mcs.svc.clusterset.local", "SRV")
    assert rdatas(srv) == {"_http._tcp.front.mcs.svc.clusterset.local. 0 100 80 front.mcs.svc.clusterset.local."}
    assert rdatas(srv, "additional") == {"front.mcs.svc.clusterset.local. 10.200.0.10",
                                         "front.mcs.svc.clusterset.local. fd00:200::10"}
    assert addresses(await k.query("pets.mcs.svc.clusterset.local", "A")) == {"10.244.1.60", "10.244.3.60"}
    assert addresses(await k.query("pet-0.central.eu.pets.mcs.svc.clusterset.local", "A")) == {"10.244.3.60"}
    assert addresses(await k.query("pet-1.central.eu.pets.mcs.svc.clusterset.local", "AAAA")) == {"fd00:244:3::61"}
    assert addresses(await k.query("imported.mcs.svc.clusterset.local", "A")) == {"10.200.0.30"}
    for name in ("west.front", "central.eu.front", "central.eu.pets", "pet-0.west.pets", "hidden", "quiet", "alias"):
        msg = await k.query(f"{name}.mcs.svc.clusterset.local", "A")
        assert msg.rcode() == dns.rcode.NXDOMAIN, name
    txt = await k.query("dns-version.clusterset.local", "TXT")
    assert rdatas(txt) == {'dns-version.clusterset.local. "1.0.0"'} and txt.answer[0].ttl == 28800


async def test_answers_are_kept_until_their_data_changes(serve: Serve, snapshots: dict[str, Path]) -> None:
    k = await serve(corefile(snapshots, UNION))
    handler = k.handler("clusterset")
    assert addresses(await k.query("db.shop.svc.cluster.union", "A")) == {"10.244.1.40", "10.244.2.40",
                                                                         "10.244.2.41", "10.244.3.40"}
    built = handler.built
    for _ in range(3):
        assert addresses(await k.query("db.shop.svc.cluster.union", "A")) == {"10.244.1.40", "10.244.2.40",
                                                                             "10.244.2.41", "10.244.3.40"}
    assert handler.built == built  # served from the template
    # West's snapshot changes (db-1 is gone) and is read again: its new index replaces the old
    # one, and with it every answer built from it.
    objects = [o for o in cluster_objects("west") if o["metadata"]["name"] != "db-w"]
    objects.append(endpoint_slice("shop", "db-w", "db", [{"ip": "10.244.2.40", "hostname": "db-0"}],
                                  ports=[("pg", 5432, "TCP")]))
    write_snapshot(snapshots["west"], objects)
    west = handler.registry.get("west")
    assert await west.source.check(west)
    assert addresses(await k.query("db.shop.svc.cluster.union", "A")) == {"10.244.1.40", "10.244.2.40", "10.244.3.40"}
    assert (await k.query("db-1.west.db.shop.svc.cluster.union", "A")).rcode() == dns.rcode.NXDOMAIN
    assert handler.built == built + 2


async def test_metrics_and_readiness(serve: Serve, snapshots: dict[str, Path]) -> None:
    k = await serve(corefile(snapshots, ALL))
    for _ in range(3):
        await k.query("web.shop.svc.cluster.all", "A")
    await k.query("web.shop.svc.elsewhere", "A")  # not the clusterset's: not counted
    text = generate_latest(k.server.services.metrics.registry).decode()
    assert 'interkube_clusterset_requests_total{zone="cluster.all."} 3.0' in text
    assert 'interkube_clusterset_cluster_answering{cluster="central.eu",zone="cluster.all."} 1.0' in text
    assert "interkube_clusterset_cluster_left_out_total{" not in text  # nobody left out yet
    assert k.server.services.not_ready() == []
    assert k.handler("clusterset").readiness() == {"clusterset:cluster.all": True}


def test_snapshot_files_carry_both_serviceimport_layouts(snapshots: dict[str, Path]) -> None:
    # "imported" is written in the v1alpha2 layout (fields at the top), "front" in v1alpha1's
    # spec/status; both are read.
    docs = yaml.safe_load(snapshots["east"].read_text())["items"]
    layouts = {d["metadata"]["name"]: d["apiVersion"] for d in docs if d["kind"] == "ServiceImport"}
    assert layouts["imported"].endswith("v1alpha2") and layouts["front"].endswith("v1alpha1")
    source = SnapshotSource((str(snapshots["east"]),), Filters())
    index = source.load(Cluster("east", source))
    imported, front = index.service_import("mcs", "imported"), index.service_import("mcs", "front")
    assert imported is not None and (imported.type, imported.ips, imported.clusters) == (
        "ClusterSetIP", ("10.200.0.30",), ("central.eu",))
    assert front is not None and front.ips == ("10.200.0.10", "fd00:200::10")
    assert front.clusters == ("west", "central.eu")
    assert [p.port for p in front.ports] == [80]

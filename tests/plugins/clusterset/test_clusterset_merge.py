"""The merge rules on their own: three clusters' indexes, one question at a time, no sockets."""

from __future__ import annotations

from pathlib import Path

import dns.name
import dns.rdatatype
import pytest

from interkube.kube.cluster import Cluster
from interkube.kube.dnsrecords import Outcome
from interkube.kube.filters import Filters
from interkube.kube.index import ClusterIndex, DepKey
from interkube.kube.merge import Merge, Options, Source
from interkube.kube.snapshot import SnapshotSource, build_index
from testkit.fakekube import write_snapshot

from clusterset_data import CLUSTERS, cluster_objects

A, AAAA, SRV, TXT, CNAME, SOA, MX = (dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.SRV, dns.rdatatype.TXT,
                                     dns.rdatatype.CNAME, dns.rdatatype.SOA, dns.rdatatype.MX)
LOCAL_FIRST = Options(local="east", local_first=True)
UNION = Options(local="east")
MCS = Options(local="east", mcs=True)


@pytest.fixture(scope="module")
def indexes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ClusterIndex]:
    tmp: Path = tmp_path_factory.mktemp("clusters")
    out = {}
    for name in CLUSTERS:
        source = SnapshotSource((str(write_snapshot(tmp / f"{name}.yaml", cluster_objects(name))),), Filters())
        out[name] = build_index(source.paths, source.filters, Cluster(name, source))
    return out


def ask(indexes: dict[str, ClusterIndex], name: str, rdtype: int, opts: Options,
        answering: tuple[str, ...] = CLUSTERS, deps: dict[str, set[DepKey]] | None = None) -> Outcome | None:
    zone = "clusterset.local." if opts.mcs else "cluster.all."
    deps = deps if deps is not None else {}
    sources = [Source(n, indexes[n].view(deps.setdefault(n, set()))) for n in answering]
    return Merge(sources, CLUSTERS, zone, opts).answer(dns.name.from_text(name + "." + zone), rdtype)


def values(outcome: Outcome | None, section: str = "answer") -> set[str]:
    assert outcome is not None and not outcome.name_error, outcome
    return {rd.to_text() for rrset in getattr(outcome, section) for rd in rrset}


def owners(outcome: Outcome | None, section: str = "additional") -> set[str]:
    assert outcome is not None
    return {f"{rrset.name} {rd}" for rrset in getattr(outcome, section) for rd in rrset}


def nxdomain(outcome: Outcome | None) -> bool:
    return outcome is not None and outcome.name_error and not outcome.answer


def nodata(outcome: Outcome | None) -> bool:
    return outcome is not None and not outcome.name_error and not outcome.answer


# --- cluster.all -----------------------------------------------------------------------------

def test_local_first_answers_the_local_cluster_alone_when_it_has_ready_endpoints(indexes) -> None:  # type: ignore[no-untyped-def]
    assert values(ask(indexes, "web.shop.svc", A, LOCAL_FIRST)) == {"10.96.1.10"}
    assert values(ask(indexes, "web.shop.svc", AAAA, LOCAL_FIRST)) == {"fd00:96:1::10"}
    # api is not in east: the union of the clusters with ready endpoints (west; central has none).
    assert values(ask(indexes, "api.shop.svc", A, LOCAL_FIRST)) == {"10.244.2.20"}


def test_the_union_gives_remote_clusters_as_their_ready_pod_addresses(indexes) -> None:  # type: ignore[no-untyped-def]
    # The local ClusterIP, and the ready endpoints (not the VIPs) of west and central; west's
    # not-ready endpoint is left out.
    assert values(ask(indexes, "web.shop.svc", A, UNION)) == {"10.96.1.10", "10.244.2.5", "10.244.2.6", "10.244.3.5"}
    assert values(ask(indexes, "web.shop.svc", AAAA, UNION)) == {"fd00:96:1::10", "fd00:244:2::5"}
    remote_vips = Options(local="east", remote_clusterip=True)
    assert values(ask(indexes, "web.shop.svc", A, remote_vips)) == {"10.96.1.10", "10.96.2.10", "10.96.3.10"}
    # Without a local cluster every cluster is remote.
    assert values(ask(indexes, "web.shop.svc", A, Options())) == {"10.244.1.5", "10.244.2.5", "10.244.2.6",
                                                                  "10.244.3.5"}


def test_a_and_aaaa_come_from_the_same_clusters(indexes) -> None:  # type: ignore[no-untyped-def]
    # v4: east has only an IPv4 ClusterIP, west only IPv6 endpoints. Local-first picks east for
    # both questions, so AAAA is empty (NODATA) rather than west's address.
    assert values(ask(indexes, "v4.shop.svc", A, LOCAL_FIRST)) == {"10.96.1.50"}
    assert nodata(ask(indexes, "v4.shop.svc", AAAA, LOCAL_FIRST))
    assert values(ask(indexes, "v4.shop.svc", AAAA, UNION)) == {"fd00:244:2::50"}


def test_nothing_ready_anywhere(indexes) -> None:  # type: ignore[no-untyped-def]
    # A ClusterIP Service without endpoints still exists: the local VIP answers, as one
    # cluster's own DNS would; a remote one answers nothing by default (NODATA)...
    assert values(ask(indexes, "idle.shop.svc", A, LOCAL_FIRST)) == {"10.96.1.30"}
    assert nodata(ask(indexes, "idle2.shop.svc", A, LOCAL_FIRST))
    assert values(ask(indexes, "idle2.shop.svc", A, Options(remote_clusterip=True))) == {"10.96.2.31"}
    # ... and a headless one with nothing ready does not exist.
    assert nxdomain(ask(indexes, "hl-none.shop.svc", A, UNION))


def test_srv_is_the_union_of_named_ports_over_the_answering_clusters(indexes) -> None:  # type: ignore[no-untyped-def]
    srv = ask(indexes, "_http._tcp.web.shop.svc", SRV, LOCAL_FIRST)
    assert values(srv) == {"0 100 80 web.shop.svc.cluster.all."}
    assert owners(srv) == {"web.shop.svc.cluster.all. 10.96.1.10", "web.shop.svc.cluster.all. fd00:96:1::10"}
    # The bare name: every port of every answering cluster (union, not intersection).
    assert values(ask(indexes, "mixed.shop.svc", SRV, UNION)) == {"0 50 80 mixed.shop.svc.cluster.all.",
                                                                  "0 50 9000 mixed.shop.svc.cluster.all."}
    assert values(ask(indexes, "_grpc._tcp.mixed.shop.svc", SRV, UNION)) == {"0 100 9000 mixed.shop.svc.cluster.all."}
    # Under local-first east answers alone, and east has no grpc port: the name exists in the
    # clusterset (west has it) but has no records here.
    assert nodata(ask(indexes, "_grpc._tcp.mixed.shop.svc", SRV, LOCAL_FIRST))
    assert nxdomain(ask(indexes, "_nope._tcp.mixed.shop.svc", SRV, UNION))
    assert nxdomain(ask(indexes, "_http._udp.web.shop.svc", SRV, UNION))


def test_headless_endpoints_are_named_by_cluster(indexes) -> None:  # type: ignore[no-untyped-def]
    assert values(ask(indexes, "db.shop.svc", A, LOCAL_FIRST)) == {"10.244.1.40"}
    assert values(ask(indexes, "db.shop.svc", A, UNION)) == {"10.244.1.40", "10.244.2.40", "10.244.2.41",
                                                            "10.244.3.40"}
    srv = ask(indexes, "_pg._tcp.db.shop.svc", SRV, UNION)
    targets = {"db-0.east", "db-0.west", "db-1.west", "db-0.central.eu"}
    assert values(srv) == {f"0 25 5432 {t}.db.shop.svc.cluster.all." for t in targets}
    assert owners(srv) == {"db-0.east.db.shop.svc.cluster.all. 10.244.1.40",
                           "db-0.west.db.shop.svc.cluster.all. 10.244.2.40",
                           "db-1.west.db.shop.svc.cluster.all. 10.244.2.41",
                           "db-0.central.eu.db.shop.svc.cluster.all. 10.244.3.40"}
    # Each endpoint name answers whatever the policy, with its own cluster's address.
    assert values(ask(indexes, "db-0.west.db.shop.svc", A, LOCAL_FIRST)) == {"10.244.2.40"}
    assert values(ask(indexes, "DB-0.Central.EU.db.shop.svc", A, LOCAL_FIRST)) == {"10.244.3.40"}
    assert nodata(ask(indexes, "db-0.west.db.shop.svc", AAAA, UNION))
    for missing in ("db-1.east.db.shop.svc", "db-0.north.db.shop.svc", "db-0.eu.db.shop.svc",
                    "db-0.db.shop.svc", "west.db.shop.svc", "db-0.west.web.shop.svc"):
        assert nxdomain(ask(indexes, missing, A, UNION)), missing


def test_an_endpoint_name_of_a_cluster_left_out_cannot_be_answered(indexes) -> None:  # type: ignore[no-untyped-def]
    assert ask(indexes, "db-0.west.db.shop.svc", A, UNION, answering=("east", "central.eu")) is None
    # The clusters still answering give the rest.
    assert values(ask(indexes, "db.shop.svc", A, UNION, answering=("east", "central.eu"))) == {"10.244.1.40",
                                                                                              "10.244.3.40"}


def test_no_cluster_has_the_name(indexes) -> None:  # type: ignore[no-untyped-def]
    assert nxdomain(ask(indexes, "nope.shop.svc", A, UNION))
    assert nxdomain(ask(indexes, "web.nons.svc", A, UNION))
    assert nxdomain(ask(indexes, "nons.svc", A, UNION))
    assert nxdomain(ask(indexes, "web.shop.other", A, UNION))
    assert nxdomain(ask(indexes, "x.shop.pod", A, UNION))
    assert nxdomain(ask(indexes, "dns-version", TXT, UNION))  # the MCS schema is claimed only in MCS mode
    for empty in ("shop.svc", "svc", "pod"):  # empty non-terminals
        assert nodata(ask(indexes, empty, A, UNION)), empty
        assert nodata(ask(indexes, empty, MX, UNION)), empty


def test_other_types_and_the_apex(indexes) -> None:  # type: ignore[no-untyped-def]
    assert nodata(ask(indexes, "web.shop.svc", TXT, UNION))
    apex = Merge([Source(n, indexes[n].view(set())) for n in CLUSTERS], CLUSTERS, "cluster.all.", UNION)
    soa = apex.answer(dns.name.from_text("cluster.all."), SOA)
    assert soa is not None and soa.answer[0][0].mname.to_text() == "ns.dns.cluster.all."
    assert nodata(apex.answer(dns.name.from_text("cluster.all."), A))


def test_an_external_name_is_an_alias_outside_mcs(indexes) -> None:  # type: ignore[no-untyped-def]
    assert values(ask(indexes, "ext.shop.svc", A, UNION)) == {"www.example.com."}
    assert values(ask(indexes, "ext.shop.svc", CNAME, UNION)) == {"www.example.com."}
    assert nodata(ask(indexes, "ext.shop.svc", SRV, UNION))


def test_answers_record_what_they_read_in_each_cluster(indexes) -> None:  # type: ignore[no-untyped-def]
    deps: dict[str, set[DepKey]] = {}
    ask(indexes, "web.shop.svc", A, LOCAL_FIRST, deps=deps)
    # The answer is east's alone, but it depends on every cluster's web (a change in west can
    # matter once east loses its endpoints).
    assert all(("s", "shop", "web") in deps[n] for n in CLUSTERS)
    deps = {}
    ask(indexes, "front.mcs.svc", A, MCS, deps=deps)
    assert ("m", "mcs", "front") in deps["east"]


# --- MCS (clusterset.local) ------------------------------------------------------------------

def test_mcs_clustersetip_answers_the_serviceimport_ips(indexes) -> None:  # type: ignore[no-untyped-def]
    # East's own ServiceImport is used (west's holds another, per-cluster IP).
    assert values(ask(indexes, "front.mcs.svc", A, MCS)) == {"10.200.0.10"}
    assert values(ask(indexes, "front.mcs.svc", AAAA, MCS)) == {"fd00:200::10"}
    srv = ask(indexes, "_http._tcp.front.mcs.svc", SRV, MCS)
    assert values(srv) == {"0 100 80 front.mcs.svc.clusterset.local."}
    assert owners(srv) == {"front.mcs.svc.clusterset.local. 10.200.0.10",
                           "front.mcs.svc.clusterset.local. fd00:200::10"}
    # The ServiceImport of a cluster's own when the local one is left out.
    assert values(ask(indexes, "front.mcs.svc", A, MCS, answering=("west", "central.eu"))) == {"10.201.0.10"}


def test_mcs_has_no_cluster_specific_names_for_clustersetip(indexes) -> None:  # type: ignore[no-untyped-def]
    for name in ("west.front.mcs.svc", "central.eu.front.mcs.svc", "x.west.front.mcs.svc",
                 "10-244-2-10.west.front.mcs.svc"):
        assert nxdomain(ask(indexes, name, A, MCS)), name


def test_mcs_counts_only_exported_services(indexes) -> None:  # type: ignore[no-untyped-def]
    assert nxdomain(ask(indexes, "hidden.mcs.svc", A, MCS))
    assert values(ask(indexes, "hidden.mcs.svc", A, UNION)) == {"10.96.1.70", "10.244.2.70"}  # cluster.all has it
    # An import naming the source cluster counts as its export (central has no ServiceExport).
    assert values(ask(indexes, "imported.mcs.svc", A, MCS)) == {"10.200.0.30"}
    # Without an import, exported ClusterIP Services merge as cluster.all does.
    assert values(ask(indexes, "plain.mcs.svc", A, MCS)) == {"10.96.1.80", "10.244.2.80"}
    assert values(ask(indexes, "plain.mcs.svc", A, Options(local="east", local_first=True, mcs=True))) == {"10.96.1.80"}


def test_mcs_headless_with_cluster_ids_holding_a_dot(indexes) -> None:  # type: ignore[no-untyped-def]
    # Exported from east and central.eu only: west's pet is not part of it.
    assert values(ask(indexes, "pets.mcs.svc", A, MCS)) == {"10.244.1.60", "10.244.3.60"}
    assert values(ask(indexes, "pets.mcs.svc", AAAA, MCS)) == {"fd00:244:3::61"}
    assert values(ask(indexes, "pet-0.central.eu.pets.mcs.svc", A, MCS)) == {"10.244.3.60"}
    assert values(ask(indexes, "pet-1.central.eu.pets.mcs.svc", AAAA, MCS)) == {"fd00:244:3::61"}
    assert values(ask(indexes, "pet-0.east.pets.mcs.svc", A, MCS)) == {"10.244.1.60"}
    assert nxdomain(ask(indexes, "pet-0.west.pets.mcs.svc", A, MCS))
    for name in ("central.eu.pets.mcs.svc", "east.pets.mcs.svc", "eu.pets.mcs.svc", "pet-0.eu.pets.mcs.svc"):
        assert nxdomain(ask(indexes, name, A, MCS)), name
    srv = ask(indexes, "_peer._tcp.pets.mcs.svc", SRV, MCS)
    assert values(srv) == {f"0 33 2380 {t}.pets.mcs.svc.clusterset.local."
                           for t in ("pet-0.east", "pet-0.central.eu", "pet-1.central.eu")}
    # A ServiceImport of type Headless makes the Service headless and exported.
    assert values(ask(indexes, "hl-imp.mcs.svc", A, MCS)) == {"10.244.2.70"}
    assert values(ask(indexes, "h-0.west.hl-imp.mcs.svc", A, MCS)) == {"10.244.2.70"}


def test_mcs_no_ready_endpoint_anywhere_and_externalname(indexes) -> None:  # type: ignore[no-untyped-def]
    assert nxdomain(ask(indexes, "quiet.mcs.svc", A, MCS))  # imported with an IP, nothing ready
    assert nxdomain(ask(indexes, "_http._tcp.quiet.mcs.svc", SRV, MCS))
    assert nxdomain(ask(indexes, "alias.mcs.svc", A, MCS))  # exported, but ExternalName
    assert nxdomain(ask(indexes, "alias.mcs.svc", CNAME, MCS))


def test_mcs_schema_version(indexes) -> None:  # type: ignore[no-untyped-def]
    txt = ask(indexes, "dns-version", TXT, MCS)
    assert values(txt) == {'"1.0.0"'} and txt.answer[0].ttl == 28800  # type: ignore[union-attr]
    assert nodata(ask(indexes, "dns-version", A, MCS))

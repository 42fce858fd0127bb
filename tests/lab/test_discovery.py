"""Scenario Discovery across clusters, VIP proxying and the merged domain, in network namespaces.

Three clusters behind a transit hub, each router running `interkube proxy` for the other two
clusters' Service ranges: from a client pod of every cluster, `web.shop.svc.cluster.<name>`
resolves for every cluster and `web.shop.svc.cluster.all` too, and a TCP connection to each
cluster's web VIP reaches one of that cluster's web pods (the remote ones through the proxy on
the local router).
"""

from __future__ import annotations

from dns import rdatatype
from plans import DISCOVERY

from interkube.netplan.parse import load_plan
from interkube.netplan.rules import check
from testkit.lab import LabUp

CLUSTERS = ("east", "west", "north")


def addresses(reply: object, rdtype: rdatatype.RdataType = rdatatype.A) -> set[str]:
    return {str(r) for rrset in reply.answer if rrset.rdtype == rdtype for r in rrset}  # type: ignore[attr-defined]


def test_every_cluster_resolves_and_reaches_every_clusters_services(lab_up: LabUp) -> None:
    assert check(load_plan(DISCOVERY)).ok
    lab = lab_up(DISCOVERY)
    vips = {name: lab.cluster(name).services[2].cluster_ips[0] for name in CLUSTERS}
    web_pods = {name: {p.addresses[0] for p in lab.cluster(name).pods.values() if p.role == "web"}
                for name in CLUSTERS}
    for here in CLUSTERS:
        for there in CLUSTERS:
            assert addresses(lab.query(here, "client", f"web.shop.svc.cluster.{there}")) == {vips[there]}
        # The merged domain: the local Service first (its VIP), as clusterset's local-first does.
        assert addresses(lab.query(here, "client", "web.shop.svc.cluster.all")) == {vips[here]}
        for there in CLUSTERS:
            reached = lab.connect(here, "client", vips[there], 80)
            cluster, pod = reached.split("/")
            assert cluster == there
            assert lab.cluster(there).pod(pod).addresses[0] in web_pods[there]
    status = lab.status()
    assert status["clusters"]["east"]["proxy"]["clusters"] == ["west", "north"]
    assert all(p["running"] for p in status["processes"].values())

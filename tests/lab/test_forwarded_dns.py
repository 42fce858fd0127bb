"""Scenario Forwarded DNS between clusters, in network namespaces (docs/lab.md).

A client pod of cluster1 asks its cluster DNS (the kube-dns VIP, DNATed on its node to cluster1's
interkube) for the remote StatefulSet's SRV record; interkube forwards the namespace `remote` to
cluster2's DNS across the peering (plain DNS, then DNS over TLS with mutual TLS); the client gets
three targets with their addresses and opens a TCP connection to each, reaching the pod named.
Over an overlay cluster2 the names still resolve but the pods cannot be reached, as `interkube
check` said beforehand (R4, R2).
"""

from __future__ import annotations

import pytest
from dns import rdatatype
from plans import FORWARDED, SRV, overlay_variant

from interkube.netplan.parse import load_plan, parse_plan
from interkube.netplan.rules import Severity, check
from testkit.lab import LabUp


def srv_targets(reply: object) -> dict[str, tuple[int, str]]:
    """target name -> (port, address from the additional section)."""
    addresses = {str(rr.name): str(rr[0]) for rr in reply.additional if rr.rdtype == rdatatype.A}  # type: ignore[attr-defined]
    targets = {}
    for rrset in reply.answer:  # type: ignore[attr-defined]
        for srv in rrset:
            targets[str(srv.target)] = (srv.port, addresses.get(str(srv.target), ""))
    return targets


@pytest.mark.parametrize("dot", [False, True], ids=["dns", "dot-mtls"])
def test_a_client_pod_resolves_the_remote_set_and_reaches_every_member(lab_up: LabUp, dot: bool) -> None:
    assert check(load_plan(FORWARDED)).ok
    lab = lab_up(FORWARDED, dot=dot)
    reply = lab.query("cluster1", "client", SRV, "SRV")
    targets = srv_targets(reply)
    remote_pods = {p.name: p.addresses[0] for p in lab.cluster("cluster2").pods.values() if p.role == "stateful"}
    assert sorted(targets) == [f"cb-example-{i}.cb-example-srv.remote.svc.cluster.local." for i in range(3)]
    for target, (port, address) in targets.items():
        pod = target.split(".")[0]
        assert address == remote_pods[pod]
        assert lab.connect("cluster1", "client", address, port) == f"cluster2/{pod}"
    corefile = (lab.state_dir / "dns" / "cluster1" / "Corefile").read_text()
    assert ("tls://" in corefile) is dot
    if dot:
        # The remote side refuses a client without the lab CA's certificate: mTLS is in force.
        there = lab.dns_address("cluster2")
        kdig = lab.exec("cluster1", "client", ["kdig", f"@{there}", "-p", "853", "+tls", "+timeout=3", "+retry=0",
                                               SRV, "SRV"])
        assert "NOERROR" not in kdig.stdout, kdig.stdout


def test_over_an_overlay_cluster_the_names_resolve_but_the_pods_are_unreachable(lab_up: LabUp) -> None:
    text = overlay_variant()
    report = check(parse_plan(text))
    assert [f.rule for f in report.findings if f.severity is Severity.ERROR] == ["R4"]
    assert report.by_rule("R2", Severity.WARNING)
    lab = lab_up(text)
    targets = srv_targets(lab.query("cluster1", "client", SRV, "SRV"))
    assert len(targets) == 3
    for port, address in targets.values():
        with pytest.raises(OSError):
            lab.connect("cluster1", "client", address, port, timeout=3)
    # Inside cluster2, through the VXLAN between its nodes, the same pods answer.
    for target, (port, address) in targets.items():
        assert lab.connect("cluster2", "client", address, port) == f"cluster2/{target.split('.')[0]}"

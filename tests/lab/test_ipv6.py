"""Scenario IPv6 between clusters, in network namespaces: two IPv6-only clusters with ULA ranges
from `interkube plan --ipv6 ula`, routed without NAT; discovery as for IPv4 (every cluster's web
Service by name from each, AAAA of the remote pods through cluster.all's remote members), the
forwarded namespace's SRV targets reached over IPv6.
"""

from __future__ import annotations

import dataclasses
import ipaddress

from dns import rdatatype
from plans import SRV

from interkube.netplan.allocate import Sizing, allocate
from interkube.netplan.dump import dump_plan
from interkube.netplan.model import Forward, Origin, Plan
from interkube.netplan.rules import check
from testkit.lab import LabUp


def ipv6_only_plan() -> Plan:
    """`interkube plan --clusters 2 --ipv6 ula --nodes 4` with the IPv4 ranges left out, and the
    first cluster forwarding `remote` to the second."""
    plan = allocate(Sizing(clusters=2, nodes=4, ipv6="ula"))
    clusters = []
    for i, c in enumerate(plan.clusters):
        v6 = {role: tuple(r for r in getattr(c, role) if r.network.version == 6)
              for role in ("nodes", "pods", "services")}
        forward = (Forward("remote", plan.clusters[1].name, Origin("forward")),) if i == 0 else ()
        clusters.append(dataclasses.replace(c, **v6, forward=forward, dns=None))
    return dataclasses.replace(plan, clusters=tuple(clusters))


def test_ipv6_only_clusters_discover_and_reach_each_other(lab_up: LabUp) -> None:
    plan = ipv6_only_plan()
    assert check(plan).ok, [f.message for f in check(plan).findings]
    names = [c.name for c in plan.clusters]
    lab = lab_up(dump_plan(plan))
    for name in names:
        for address in lab.cluster(name).dns_addresses + lab.cluster(name).dns_service:
            assert ipaddress.ip_address(address).version == 6
    first, second = names
    for here in names:
        for there in names:
            reply = lab.query(here, "client", f"web.shop.svc.cluster.{there}", "AAAA")
            vip = lab.cluster(there).services[2].cluster_ips[0]
            assert {str(r) for rrset in reply.answer for r in rrset} == {vip}
    reply = lab.query(first, "client", SRV, "SRV")
    additional = {str(rr.name): str(rr[0]) for rr in reply.additional if rr.rdtype == rdatatype.AAAA}
    targets = [(str(srv.target), srv.port) for rrset in reply.answer for srv in rrset]
    assert len(targets) == 3
    for target, port in targets:
        pod = target.split(".")[0]
        assert additional[target] == lab.address(second, pod, 6)
        assert lab.connect(first, "client", additional[target], port) == f"{second}/{pod}"
    # And a remote pod by address across the link, without NAT: the server sees the client's own
    # address (the lab's TCP servers name the pod they run in, so check from the other side).
    web = lab.address(second, "web-0", 6)
    assert lab.connect(first, "client", web, 80) == f"{second}/web-0"

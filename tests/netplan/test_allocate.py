"""Allocation: every plan that ``plan`` writes passes ``check``; sizes, IPv6 and refusals."""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interkube.errors import PlanError
from interkube.netplan.allocate import Sizing, allocate, ula_prefix
from interkube.netplan.dump import dump_plan
from interkube.netplan.model import LinkKind
from interkube.netplan.parse import parse_plan
from interkube.netplan.rules import Severity, check

SUPERNETS = ("10.0.0.0/8", "10.64.0.0/10", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")


@st.composite
def sizings(draw: st.DrawFn) -> Sizing:
    ipv6 = draw(st.sampled_from([None, "ula", "2001:db8::/32", "2001:db8:40::/44", "fd12:3456::/40"]))
    return Sizing(
        clusters=draw(st.integers(min_value=1, max_value=30)),
        supernet=ipaddress.IPv4Network(draw(st.sampled_from(SUPERNETS))),
        # Mostly sizes that fit, now and then ones that do not.
        nodes=draw(st.one_of(st.integers(min_value=1, max_value=300), st.integers(min_value=1, max_value=5000))),
        pods_per_node=draw(st.integers(min_value=1, max_value=250)),
        services=draw(st.one_of(st.integers(min_value=1, max_value=20_000),
                                st.integers(min_value=1, max_value=1_000_000))),
        ipv6=ipv6,
        ipv6_from_ipv4=ipv6 is not None and draw(st.booleans()),
        topology=draw(st.sampled_from(["hub", "mesh"])),
        seed=draw(st.text(min_size=1, max_size=8)),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizings())
def test_every_written_plan_passes_check(sizing: Sizing) -> None:
    try:
        plan = allocate(sizing)
    except PlanError as exc:
        # Refusals are fine when the request cannot fit, but they must say which option to change.
        assert "--" in str(exc)
        return
    text = dump_plan(plan)
    report = check(parse_plan(text, file="written.yaml"))
    assert report.ok, [f.message for f in report.findings if f.severity is Severity.ERROR]
    assert [f for f in report.findings if f.severity is not Severity.INFO] == []
    assert len(plan.clusters) == sizing.clusters
    for cluster in plan.clusters:
        pods_v4 = cluster.pods[0].network
        # Headroom: room for twice the nodes, each with room for twice the pods.
        assert pods_v4.num_addresses >= 2 * sizing.nodes * 2 * sizing.pods_per_node
        assert cluster.nodes[0].network.num_addresses >= 2 * sizing.nodes
        assert cluster.services[0].network.num_addresses >= 2 * sizing.services
        assert cluster.dns is not None and cluster.dns.service is not None
        assert any(cluster.dns.service.ip in r.network for r in cluster.services)
        if sizing.ipv6:
            assert {r.network.version for r in cluster.pods} == {4, 6}
            assert cluster.per_node_prefix.ipv6 is not None and cluster.per_node_prefix.ipv6 <= 64


def test_defaults_give_readable_blocks() -> None:
    plan = allocate(Sizing(clusters=2))
    first, second = plan.clusters
    assert [str(r) for r in first.pods + first.services + first.nodes] == ["10.0.0.0/16", "10.1.0.0/19", "10.1.32.0/24"]
    assert str(second.pods[0]) == "10.2.0.0/16"
    assert first.per_node_prefix.ipv4 == 24
    assert str(first.dns.service) == "10.1.0.10"  # type: ignore[union-attr]
    [hub] = plan.links
    assert hub.kind is LinkKind.HUB and hub.between == ("cluster1", "cluster2") and hub.pod_traffic


def test_mesh_links_every_pair() -> None:
    plan = allocate(Sizing(clusters=5, topology="mesh"))
    assert len(plan.links) == 10
    assert {frozenset(link.between) for link in plan.links} == \
        {frozenset((a.name, b.name)) for i, a in enumerate(plan.clusters) for b in plan.clusters[i + 1:]}


def test_ula_prefix_is_deterministic_per_seed() -> None:
    assert ula_prefix("interkube") == ula_prefix("interkube")
    assert ula_prefix("interkube") != ula_prefix("other")
    prefix = ula_prefix("interkube")
    assert prefix.prefixlen == 48 and prefix.subnet_of(ipaddress.IPv6Network("fd00::/8"))


def test_ipv6_derived_from_ipv4_embeds_the_ipv4_offset() -> None:
    plan = allocate(Sizing(clusters=2, ipv6="fd12:3456:789a::/48", ipv6_from_ipv4=True))
    second = plan.clusters[1]
    v4, v6 = second.pods
    # 10.2.0.0/16 is offset 0x020000 in 10.0.0.0/8: those 24 bits follow the /48 as they are.
    assert str(v4.network) == "10.2.0.0/16"
    assert v6.network == ipaddress.IPv6Network("fd12:3456:789a:200::/56")
    assert second.per_node_prefix.ipv6 == 64  # a /24 per node is 8 bits below the /16: 56 + 8
    nodes_v4, nodes_v6 = second.nodes
    assert str(nodes_v4.network) == "10.3.32.0/24"
    assert nodes_v6.network == ipaddress.IPv6Network("fd12:3456:789a:320::/64")
    # kube-apiserver caps IPv6 Service ranges, so the derived block is cut to a /112.
    assert second.services[1].network == ipaddress.IPv6Network("fd12:3456:789a:300::/112")


def test_refusals_name_the_option() -> None:
    with pytest.raises(PlanError, match="--supernet or fewer"):
        allocate(Sizing(clusters=200))  # 200 /15 blocks do not fit in a /8
    with pytest.raises(PlanError, match=re.escape("--supernet 127.0.0.0/8 overlaps the loopback")):
        allocate(Sizing(clusters=1, supernet=ipaddress.IPv4Network("127.0.0.0/8")))
    with pytest.raises(PlanError, match="--services"):
        allocate(Sizing(clusters=1, services=1_000_000))
    with pytest.raises(PlanError, match=r"--ipv6 .* smaller than a /64"):
        allocate(Sizing(clusters=1, ipv6="2001:db8::/96"))
    with pytest.raises(PlanError, match="leaves each node a /72"):
        allocate(Sizing(clusters=1, ipv6="2001:db8::/56", ipv6_from_ipv4=True))
    with pytest.raises(PlanError, match="--nodes"):
        allocate(Sizing(clusters=1, supernet=ipaddress.IPv4Network("192.168.0.0/16"), nodes=1000))
    with pytest.raises(PlanError, match="--ipv6 fe80::/64 overlaps the link-local"):
        allocate(Sizing(clusters=1, ipv6="fe80::/64"))
    with pytest.raises(PlanError, match="--clusters"):
        allocate(Sizing(clusters=0))

"""What a plan becomes, without building it (no root needed): names, addresses, routes, rules,
the DNS servers' Corefiles and the proxy's configuration."""

from __future__ import annotations

import pytest
from plans import BLACK_HOLE, DISCOVERY, FORWARDED, overlay_variant

from interkube.errors import LabError
from interkube.lab.data import corefile, proxy_config, snapshot
from interkube.lab.layout import PREFIX, layout
from interkube.netplan.parse import load_plan, parse_plan


def routes(lay: object, ns: str) -> list[str]:
    """The routes toward other members (over the wires ``w<N>``)."""
    return [c for c in lay.commands[ns] if c.startswith("route replace") and " dev w" in c]  # type: ignore[attr-defined]


def test_every_name_carries_the_prefix_and_the_instance() -> None:
    lay = layout(load_plan(FORWARDED), "abc123")
    assert lay.namespaces and all(ns.startswith(f"{PREFIX}-abc123-") for ns in lay.namespaces)
    assert len(set(lay.namespaces)) == len(lay.namespaces)
    # Every veth end lives in a namespace of the lab.
    assert {ns for a, _, b, _ in lay.veths for ns in (a, b)} <= set(lay.namespaces)


def test_addresses_come_from_the_plans_ranges() -> None:
    lay = layout(load_plan(FORWARDED), "abc123")
    two = lay.clusters["cluster2"]
    assert two.router_addresses == ["10.1.0.1"]
    assert [n.addresses for n in two.nodes] == [["10.1.0.2"], ["10.1.0.3"]]
    assert two.dns_addresses == ["10.1.28.194"]  # the plan's DNS endpoint
    assert two.dns_service == ["172.20.0.10"]
    assert two.stateful_namespace == "remote"  # the namespace cluster1 forwards here
    assert all(p.addresses[0].startswith("10.1.") for p in two.pods.values())


def test_routed_pods_are_advertised_overlay_pods_are_not() -> None:
    routed = layout(load_plan(FORWARDED), "abc123")
    assert routes(routed, routed.clusters["cluster1"].router) == ["route replace 10.1.0.0/16 via 169.254.64.2 dev w0"]
    overlay = layout(parse_plan(overlay_variant()), "abc123")
    one = routes(overlay, overlay.clusters["cluster1"].router)
    assert one == ["route replace 10.1.0.0/16 via 169.254.64.2 dev w0"]  # nodes only, not 10.244.0.0/16
    node0 = overlay.clusters["cluster2"].nodes[0].netns
    assert any(c.startswith("link add vx0 type vxlan") for c in overlay.commands[node0])
    assert "pod_masquerade" in overlay.nft[node0]


def test_a_hub_routes_every_member_through_it() -> None:
    lay = layout(load_plan(DISCOVERY), "abc123")
    assert list(lay.hubs) == ["hub0"]
    east = routes(lay, lay.clusters["east"].router)
    assert {r.split()[2] for r in east} == {"10.20.0.0/24", "10.21.0.0/16", "10.30.0.0/24", "10.31.0.0/16"}
    assert {r.split()[-1] for r in east} == {"w0"}  # all through the wire to the hub


def test_the_service_rules_swallow_the_service_range() -> None:
    lay = layout(load_plan(BLACK_HOLE), "abc123")
    rules = lay.nft[lay.clusters["database"].nodes[0].netns]
    assert "ip daddr 10.32.0.0/16 counter drop" in rules
    assert "ip daddr 10.32.0.100 tcp dport 80 dnat to numgen random mod 2" in rules
    client = lay.external["client"]
    assert client.addresses == ["10.32.0.7"]
    assert "route replace 10.0.0.0/16 via 169.254.64.1 dev w0" in lay.commands[client.netns]


def test_nat_links_are_refused() -> None:
    text = FORWARDED.read_text().replace("pod_traffic: true}", "pod_traffic: true, nat: true}")
    with pytest.raises(LabError, match="nat: true"):
        layout(parse_plan(text), "abc123")


def test_the_dns_servers_and_proxies_configuration(tmp_path: object) -> None:
    from pathlib import Path

    data = Path(str(tmp_path))
    lay = layout(load_plan(FORWARDED), "abc123")
    one = corefile(lay, "cluster1", data)
    assert "remote.svc.cluster.local:53 {" in one and "forward . 10.1.28.194:53" in one
    assert "clusterset cluster.all" in one and "tls://" not in one
    dot = corefile(lay, "cluster2", data, dot=True, certs=data / "certs")
    assert "tls://cluster.local:853 {" in dot and "client_auth require_and_verify" in dot
    items = snapshot(lay.clusters["cluster2"])["items"]
    slices = [i for i in items if i["kind"] == "EndpointSlice" and i["metadata"]["namespace"] == "remote"]
    assert [e["hostname"] for e in slices[0]["endpoints"]] == ["cb-example-0", "cb-example-1", "cb-example-2"]
    hub = layout(load_plan(DISCOVERY), "abc123")
    conf = proxy_config(hub, "east", data, ("127.0.0.1", 9190))
    assert "cluster west {" in conf and "service_cidr 172.31.0.0/16" in conf and "local 172.30.0.0/16" in conf

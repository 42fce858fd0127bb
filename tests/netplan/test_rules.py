"""The rules R1..R10, each shown failing and passing."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path

from interkube.netplan.parse import load_plan, parse_plan
from interkube.netplan.rules import RULES, Report, Severity, check

CheckYaml = Callable[[str], Report]
ERROR, WARNING, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO


def problems(report: Report) -> list[str]:
    """Rule IDs of errors and warnings, for compact assertions."""
    return [f"{f.rule}:{f.severity}" for f in report.findings if f.severity is not INFO]


def test_every_rule_is_documented() -> None:
    assert [r.id for r in RULES] == [f"R{i}" for i in range(1, 11)]
    for rule in RULES:
        assert rule.title and rule.explanation and rule.fix


# --- the scenarios (docs/scenarios.md) and their example plans -----------------------------


def test_forwarded_dns_aws_example_passes(examples: Path) -> None:
    report = check(load_plan(examples / "000_forwarded_dns_aws.yaml"))
    assert report.ok
    assert problems(report) == []


def test_forwarded_dns_minimal_aws_plan_passes(check_yaml: CheckYaml) -> None:
    report = check_yaml("""
        clusters:
          - {name: cluster1, networking: routed, nodes: [10.0.0.0/16], pods: [10.0.0.0/16], services: [172.20.0.0/16]}
          - {name: cluster2, networking: routed, nodes: [10.1.0.0/16], pods: [10.1.0.0/16], services: [172.20.0.0/16]}
        links:
          - between: [cluster1, cluster2]
        """)
    assert report.ok and problems(report) == []


def test_vip_black_hole_is_r3_error(examples: Path) -> None:
    report = check(load_plan(examples / "001_vip_black_hole.yaml"))
    assert not report.ok
    [finding] = report.by_rule("R3", ERROR)
    assert set(finding.subjects) == {"database", "client"}
    values = {i.value for i in finding.involved}
    assert values == {"10.32.0.0/16", "10.32.0.7/32"}
    assert any("001_vip_black_hole.yaml:" in i.where and "services[0]" in i.where for i in finding.involved)
    # Taking the fix's suggestion must give a clean plan.
    suggestion = finding.fix.split("e.g. ")[1].split(",")[0]
    assert ipaddress.ip_network(suggestion).prefixlen == 16
    text = (examples / "001_vip_black_hole.yaml").read_text().replace("10.32.0.0/16", suggestion)
    assert check(parse_plan(text)).ok, suggestion


def test_scenario_examples_have_their_documented_outcome(examples: Path) -> None:
    outcomes = {path.name: problems(check(load_plan(path))) for path in sorted(examples.glob("*.yaml"))}
    assert outcomes == {
        "000_forwarded_dns_aws.yaml": [],
        "001_vip_black_hole.yaml": ["R3:error"],
        "002_service_proxying.yaml": [],
        "003_split_dns_replica.yaml": ["R5:warning"],
        "004_ipv6_dual_stack.yaml": ["R7:warning"],
    }


# --- R1 / R2 / R3: overlaps --------------------------------------------------------------


def test_r1_routed_pods_overlapping_another_cluster(check_yaml: CheckYaml) -> None:
    report = check_yaml("""
        clusters:
          - {name: a, nodes: [192.168.0.0/24], pods: [10.0.0.0/16]}
          - {name: b, nodes: [192.168.1.0/24], pods: [10.0.128.0/17]}
        """)
    [finding] = report.by_rule("R1", ERROR)
    assert finding.subjects == ("a", "b")
    assert "pod range 10.0.0.0/16 of cluster a contains pod range 10.0.128.0/17 of cluster b" in finding.message


def test_r1_routed_nodes_overlapping_external_network(check_yaml: CheckYaml) -> None:
    report = check_yaml("""
        clusters:
          - {name: a, nodes: [10.10.0.0/24]}
        external:
          - {name: onprem, kind: onprem, cidrs: [10.0.0.0/12]}
        """)
    assert problems(report) == ["R1:error"]


def test_own_nodes_and_pods_may_share_a_range_and_externals_may_nest(check_yaml: CheckYaml) -> None:
    report = check_yaml("""
        clusters:
          - {name: a, nodes: [10.0.0.0/16], pods: [10.0.0.0/16]}
        external:
          - {name: vpn, kind: vpn, cidrs: [192.168.0.0/16]}
          - {name: clients, kind: client, cidrs: [192.168.7.0/24]}
        """)
    assert problems(report) == []


def test_r2_overlay_nodes_must_be_unique_but_pods_may_repeat(check_yaml: CheckYaml) -> None:
    report = check_yaml("""
        clusters:
          - {name: a, networking: overlay, nodes: [192.168.0.0/24], pods: [10.244.0.0/16]}
          - {name: b, networking: overlay, nodes: [192.168.0.0/25], pods: [10.244.0.0/16]}
        """)
    assert problems(report) == ["R2:error"]
    assert "node range 192.168.0.0/24 of cluster a" in report.by_rule("R2")[0].message


def test_r2_overlay_pods_aliasing_a_routed_network_warn(check_yaml: CheckYaml) -> None:
    report = check_yaml("""
        clusters:
          - {name: a, networking: overlay, nodes: [192.168.0.0/24], pods: [10.0.0.0/8]}
          - {name: b, nodes: [10.1.0.0/16]}
        """)
    assert problems(report) == ["R2:warning"]


def test_r2_link_expecting_pod_traffic_to_an_overlay(check_yaml: CheckYaml) -> None:
    text = """
        clusters:
          - {name: a, nodes: [192.168.0.0/24], pods: [10.0.0.0/16]}
          - {name: b, networking: overlay, nodes: [192.168.1.0/24], pods: [10.244.0.0/16]}
        links:
          - {between: [a, b], pod_traffic: %s}
        """
    [finding] = check_yaml(text % "true").by_rule("R2", WARNING)
    assert "cluster b is an overlay" in finding.message and finding.subjects == ("b", "a")
    assert check_yaml(text % "false").by_rule("R2") == []


def test_r3_service_range_containing_own_pods(check_yaml: CheckYaml) -> None:
    report = check_yaml("""
        clusters:
          - {name: a, nodes: [192.168.0.0/24], pods: [10.96.4.0/22], services: [10.96.0.0/12]}
        """)
    [finding] = report.by_rule("R3", ERROR)
    assert finding.subjects == ("a",)


def test_r3_vips_may_repeat_and_ignore_other_overlays(check_yaml: CheckYaml) -> None:
    report = check_yaml("""
        clusters:
          - {name: a, nodes: [192.168.0.0/24], pods: [10.0.0.0/16], services: [10.96.0.0/12]}
          - {name: b, nodes: [192.168.1.0/24], pods: [10.1.0.0/16], services: [10.96.0.0/12]}
          - {name: c, networking: overlay, nodes: [192.168.2.0/24], pods: [10.100.0.0/16]}
        """)
    assert problems(report) == []


def test_r3_vip_range_inside_another_clusters_nodes(check_yaml: CheckYaml) -> None:
    report = check_yaml("""
        clusters:
          - {name: a, nodes: [10.0.0.0/8]}
          - {name: b, nodes: [192.168.1.0/24], services: [10.96.0.0/12]}
        """)
    [finding] = report.by_rule("R3")
    assert "node range 10.0.0.0/8 of cluster a contains Service range 10.96.0.0/12 of cluster b" in finding.message
    assert "move the Service range of cluster b" in finding.fix


def test_inferred_ranges_are_named_so(check_yaml: CheckYaml) -> None:
    report = check_yaml("""
        clusters:
          - {name: a, nodes: [10.96.0.5/32], services: [10.96.0.0/20], inferred: [services]}
        """)
    assert "Service range (inferred) 10.96.0.0/20" in report.by_rule("R3")[0].message


# --- R4 / R5 / R8: forwarded DNS ---------------------------------------------------------

FORWARD = """
    clusters:
      - name: local
        nodes: [10.0.0.0/16]
        pods: [10.0.0.0/16]
        namespaces: [default, %(local_ns)s]
        forward: [{namespace: remote, to: remote}]
      - name: remote
        networking: %(networking)s
        nodes: [10.1.0.0/16]
        pods: [%(pods)s]
        dns: {service: 172.20.0.10, endpoints: [%(endpoint)s]}
        services: [172.20.0.0/16]
        namespaces: [default, remote]
    links:
      - {between: [local, remote], nat: %(nat)s}
    """
FORWARD_OK = {"local_ns": "app", "networking": "routed", "pods": "10.1.0.0/16",
              "endpoint": "10.1.28.194", "nat": "false"}


def test_forwarding_between_flat_routed_clusters_passes(check_yaml: CheckYaml) -> None:
    assert problems(check_yaml(FORWARD % FORWARD_OK)) == []


def test_r4_forward_to_overlay_cluster(check_yaml: CheckYaml) -> None:
    report = check_yaml(FORWARD % {**FORWARD_OK, "networking": "overlay", "pods": "10.244.0.0/16",
                                   "endpoint": "10.244.0.5"})
    assert [f.message.split(",")[0] for f in report.by_rule("R4", ERROR)] == \
        ["cluster local forwards remote.svc.cluster.local to remote (plan.yaml:7 clusters[0].forward[0])"]
    # ... and its DNS pods are overlay pods, unreachable from local.
    assert len(report.by_rule("R8", ERROR)) == 1


def test_r4_forward_only_through_nat(check_yaml: CheckYaml) -> None:
    report = check_yaml(FORWARD % {**FORWARD_OK, "nat": "true"})
    assert problems(report) == ["R4:error"]
    assert "translates addresses" in report.by_rule("R4")[0].message


def test_r5_forwarded_namespace_shadows_a_local_one(check_yaml: CheckYaml) -> None:
    report = check_yaml(FORWARD % {**FORWARD_OK, "local_ns": "remote"})
    assert problems(report) == ["R5:warning"]
    assert report.ok


def test_r5_forwarded_namespace_missing_remotely(check_yaml: CheckYaml) -> None:
    report = check_yaml((FORWARD % FORWARD_OK).replace("namespaces: [default, remote]", "namespaces: [default]"))
    [finding] = report.by_rule("R5")
    assert "has no namespace remote" in finding.message


def test_r8_dns_endpoint_outside_the_clusters_ranges(check_yaml: CheckYaml) -> None:
    report = check_yaml(FORWARD % {**FORWARD_OK, "endpoint": "10.2.0.9"})
    [finding] = report.by_rule("R8", ERROR)
    assert "10.2.0.9" in finding.message and "outside its node and pod ranges" in finding.message


def test_r8_dns_service_ip_outside_service_range(check_yaml: CheckYaml) -> None:
    report = check_yaml((FORWARD % FORWARD_OK).replace("service: 172.20.0.10", "service: 172.21.0.10"))
    assert problems(report) == ["R8:error"]


def test_r8_forward_without_any_path(check_yaml: CheckYaml) -> None:
    text = (FORWARD % FORWARD_OK).replace("- {between: [local, remote], nat: false}",
                                          "- {between: [remote, office]}").rstrip()
    text += "\n    external:\n      - {name: office, cidrs: [192.168.9.0/24]}\n"
    report = check_yaml(text)
    assert "no link joins them" in report.by_rule("R8", ERROR)[0].message
    assert report.by_rule("R4") == []  # one finding for one cause
    assert len(report.by_rule("R10", WARNING)) == 1


def test_r8_forward_to_cluster_without_known_endpoints(check_yaml: CheckYaml) -> None:
    text = (FORWARD % FORWARD_OK).replace(", endpoints: [10.1.28.194]", "")
    assert problems(check_yaml(text)) == ["R8:warning"]
    unlinked = text.replace("    links:\n      - {between: [local, remote], nat: false}\n", "")
    assert "no link joins them" in check_yaml(unlinked).by_rule("R8", ERROR)[0].message


def test_path_through_an_external_network_counts(check_yaml: CheckYaml) -> None:
    text = (FORWARD % FORWARD_OK).replace("- {between: [local, remote], nat: false}",
                                          "- {between: [local, dc]}\n      - {between: [dc, remote]}").rstrip()
    text += "\n    external:\n      - {name: dc, kind: onprem, cidrs: [192.168.0.0/16]}\n"
    assert problems(check_yaml(text)) == []


# --- R6: proxied VIPs --------------------------------------------------------------------

PROXY = """
    clusters:
      - {name: a, nodes: [10.0.0.0/16], services: [172.20.0.0/16]}
      - {name: b, nodes: [10.1.0.0/16], services: [172.20.0.0/16]}
      - {name: c, nodes: [10.2.0.0/16], services: [172.21.0.0/16]}
    links:
    %s
    """


def test_r6_directly_proxied_clusters_need_distinct_service_ranges(check_yaml: CheckYaml) -> None:
    report = check_yaml(PROXY % "  - {between: [a, b], service_proxy: true}\n      - {between: [b, c]}")
    [finding] = report.by_rule("R6", ERROR)
    assert set(finding.subjects) == {"a", "b"}
    assert "e.g. 172.16.0.0/16," in finding.fix  # the lowest free /16 of the private block it is in


def test_r6_clusters_proxied_by_a_third(check_yaml: CheckYaml) -> None:
    report = check_yaml(PROXY % ("  - {between: [c, a], service_proxy: true}\n"
                                 "      - {between: [c, b], service_proxy: true}"))
    assert problems(report) == ["R6:error"]


def test_r6_not_without_proxying(check_yaml: CheckYaml) -> None:
    report = check_yaml(PROXY % "  - {between: [a, b]}\n      - {between: [b, c], service_proxy: true}")
    assert problems(report) == []


# --- R7: IPv6 ----------------------------------------------------------------------------


def test_r7_per_node_prefix_sizes(check_yaml: CheckYaml) -> None:
    text = "clusters:\n  - {name: a, pods: [fd00:1::/56], per_node_prefix: {ipv6: %d}}\n"
    assert problems(check_yaml(text % 64)) == []
    assert problems(check_yaml(text % 80)) == ["R7:warning"]
    assert problems(check_yaml(text % 96)) == ["R7:error"]
    assert "not even one node fits" in check_yaml(text % 48).by_rule("R7", ERROR)[0].message


def test_r7_small_ipv6_pod_range_without_per_node_prefix(check_yaml: CheckYaml) -> None:
    assert problems(check_yaml("clusters:\n  - {name: a, pods: ['fd00:1::/112']}\n")) == ["R7:error"]


def test_r7_dual_stack_families_across_a_link(check_yaml: CheckYaml) -> None:
    report = check_yaml("""
        clusters:
          - {name: a, nodes: [10.0.0.0/24, 'fd00:1::/64']}
          - {name: b, nodes: [10.0.1.0/24]}
        links:
          - {between: [a, b]}
        """)
    [finding] = report.by_rule("R7", WARNING)
    assert "cluster b has no IPv6 ranges but a do" in finding.message


def test_r7_ula_and_global_on_one_link(check_yaml: CheckYaml) -> None:
    report = check_yaml("""
        clusters:
          - {name: a, nodes: ['fd00:1::/64']}
          - {name: b, nodes: ['2001:db8:1::/64']}
        links:
          - {between: [a, b]}
        """)
    [finding] = report.by_rule("R7", WARNING)
    assert "mixes ULA IPv6 (a) with global IPv6 (b)" in finding.message


# --- R9: reserved ------------------------------------------------------------------------


def test_r9_reserved_ranges_both_families(check_yaml: CheckYaml) -> None:
    report = check_yaml("""
        clusters:
          - {name: a, nodes: [169.254.0.0/24, 'fe80::/64'], pods: [10.0.0.0/16], services: [127.0.0.0/16]}
        external:
          - {name: wide, cidrs: [0.0.0.0/0]}
        """)
    r9 = report.by_rule("R9", ERROR)
    assert {i.value for f in r9 for i in f.involved} == {"169.254.0.0/24", "fe80::/64", "127.0.0.0/16", "0.0.0.0/0"}
    assert any("the loopback range 127.0.0.0/8 contains Service range 127.0.0.0/16" in f.message for f in r9)


# --- R10: topology -----------------------------------------------------------------------


def test_r10_counts_links_and_reports_unreachable_groups(check_yaml: CheckYaml) -> None:
    report = check_yaml("""
        clusters:
          - {name: a}
          - {name: b}
          - {name: c}
          - {name: d}
        links:
          - {kind: hub, between: [a, b, c]}
        """)
    [count] = report.by_rule("R10", INFO)
    assert "full mesh needs 6 links, hub-and-spoke 3 links" in count.message
    assert "declares 3 links" in count.message
    [groups] = report.by_rule("R10", WARNING)
    assert "3 pairs of clusters have no path" in groups.message and "{a, b, c} | {d}" in groups.message
    assert report.ok


def test_r10_without_links_says_paths_are_unchecked(check_yaml: CheckYaml) -> None:
    report = check_yaml("clusters:\n  - {name: a}\n  - {name: b}\n")
    assert [f.severity for f in report.by_rule("R10")] == [INFO, INFO]
    assert problems(report) == []


def test_findings_are_worst_first(examples: Path, check_yaml: CheckYaml) -> None:
    report = check_yaml("""
        clusters:
          - {name: a, nodes: [10.0.0.0/16], services: [10.0.0.0/12], namespaces: [x], forward: [{namespace: x, to: b}]}
          - {name: b, nodes: [10.1.0.0/16]}
        links:
          - {between: [a, b]}
        """)
    severities = [f.severity for f in report.findings]
    assert severities == sorted(severities, reverse=True)
    assert severities[0] is ERROR and severities[-1] is INFO

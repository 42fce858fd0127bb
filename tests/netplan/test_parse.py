"""Plan files to values, and every malformed input named by file, path and line."""

from __future__ import annotations

import ipaddress
import json
import textwrap
from pathlib import Path

import pytest

from interkube.errors import PlanError
from interkube.netplan.dump import dump_plan, plan_to_dict
from interkube.netplan.model import LinkKind, Networking
from interkube.netplan.parse import load_plan, parse_plan


def parse(text: str):
    return parse_plan(textwrap.dedent(text), file="plan.yaml")


def error_of(text: str) -> PlanError:
    with pytest.raises(PlanError) as info:
        parse(text)
    return info.value


def test_full_cluster_is_read() -> None:
    plan = parse("""\
        version: 1
        clusters:
          - name: east
            networking: overlay
            nodes: [192.168.1.0/24]
            pods: [10.244.0.0/16, fd00:10:244::/56]
            services: [10.96.0.0/12]
            per_node_prefix: {ipv4: 24, ipv6: 64}
            dns: {service: 10.96.0.10, endpoints: [10.244.0.5]}
            namespaces: [default, shop]
            forward: [{namespace: remote, to: west}]
            context: kind-east
            inferred: [services]
          - name: west
        external:
          - {name: office, kind: client, cidrs: [10.32.0.7]}
        links:
          - {between: [east, west], kind: vpn, nat: true, pod_traffic: true, service_proxy: false}
        """)
    east = plan.cluster("east")
    assert east.networking is Networking.OVERLAY
    assert [str(r) for r in east.pods] == ["10.244.0.0/16", "fd00:10:244::/56"]
    assert east.pods[1].origin.path == "clusters[0].pods[1]"
    assert east.pods[1].origin.line == 6
    assert east.per_node_prefix.ipv6 == 64
    assert east.dns is not None and str(east.dns.service) == "10.96.0.10"
    assert east.forward[0].to == "west" and east.forward[0].namespace == "remote"
    assert east.inferred == ("services",)
    assert plan.cluster("west").networking is Networking.ROUTED
    assert plan.external[0].cidrs[0].network == ipaddress.ip_network("10.32.0.7/32")
    link = plan.links[0]
    assert link.kind is LinkKind.VPN and link.nat and link.pod_traffic and not link.service_proxy


@pytest.mark.parametrize(
    ("text", "path", "line", "words"),
    [
        ("clusters:\n  - name: a\n  - name: b\n    pods: [10.0.0.0/16, 10.1.0.0/33]\n",
         "clusters[1].pods[1]", 4, "bad CIDR '10.1.0.0/33'"),
        ("clusters:\n  - name: a\n    services:\n      - 10.96.0.1/12\n",
         "clusters[0].services[0]", 4, "did you mean 10.96.0.0/12"),
        ("clusters:\n  - name: a\n    podz: []\n", "clusters[0].podz", 3, "unknown key 'podz'"),
        ("clusters:\n  - nodes: [10.0.0.0/8]\n", "clusters[0]", 2, "missing required key 'name'"),
        ("clusters:\n  - name: Bad_Name\n", "clusters[0].name", 2, "not a DNS label"),
        ("clusters:\n  - name: a\n  - name: a\n", "clusters[1].name", 3, "already used"),
        ("clusters:\n  - name: a\n    networking: flat\n", "clusters[0].networking", 3, "routed, overlay"),
        ("clusters:\n  - name: a\n    dns: {service: 10.0.0.300}\n", "clusters[0].dns.service", 3, "bad IP"),
        ("clusters:\n  - name: a\n    per_node_prefix: {ipv4: 33}\n", "clusters[0].per_node_prefix.ipv4", 3,
         "outside 0..32"),
        ("clusters:\n  - name: a\nlinks:\n  - between: [a, nowhere]\n", "links[0].between[1]", 4,
         "'nowhere' is neither"),
        ("clusters:\n  - name: a\nlinks:\n  - between: [a]\n", "links[0].between", 4, "exactly two"),
        ("clusters:\n  - name: a\nlinks:\n  - between: [a, a]\n", "links[0].between", 4, "named twice"),
        ("clusters:\n  - name: a\nlinks:\n  - between: [a, b]\n    nat: yes\n", "links[0].nat", 5,
         "true or false"),
        ("clusters:\n  - name: a\n    forward: [{namespace: x, to: b}]\n", "clusters[0].forward[0].to", 3,
         "not a cluster"),
        ("clusters:\n  - name: a\n    forward: [{namespace: x, to: a}]\n", "clusters[0].forward[0].to", 3,
         "itself"),
        ("clusters: {name: a}\n", "clusters", 1, "expected a list"),
        ("version: 2\nclusters: []\n", "version", 1, "version 1"),
        ("clusters:\n  - name: a\n    pods: [[10.0.0.0/8]]\n", "clusters[0].pods[0]", 3, "single value"),
    ],
)
def test_malformed_plan_names_file_path_and_line(text: str, path: str, line: int, words: str) -> None:
    err = error_of(text)
    assert err.file == "plan.yaml"
    assert err.path == path
    assert err.line == line
    assert words in str(err)
    assert str(err).startswith(f"plan.yaml:{line}: {path}: ")


def test_yaml_syntax_error_has_line() -> None:
    err = error_of("clusters:\n  - name: a\n    pods: [10.0.0.0/8\n")
    assert err.file == "plan.yaml" and err.line is not None and err.line >= 3
    assert "not valid YAML" in str(err)


def test_empty_plan_is_an_error() -> None:
    assert "empty" in str(error_of("# nothing\n"))


def test_json_plan_with_tabs_keeps_lines() -> None:
    text = ('{\n\t"clusters": [\n\t\t{"name": "a", "pods": ["10.0.0.0/16"]},\n'
            '\t\t{"name": "b", "pods": ["10.1.0.0/99"]}\n\t]\n}\n')
    with pytest.raises(PlanError) as info:
        parse_plan(text, file="plan.json")
    assert info.value.line == 4 and info.value.path == "clusters[1].pods[0]"
    plan = parse_plan(text.replace("/99", "/16"), file="plan.json")
    assert [c.name for c in plan.clusters] == ["a", "b"]


def test_scalars_are_taken_as_written() -> None:
    # YAML 1.1 would read 10:20 as the sexagesimal number 620; plans keep the text.
    plan = parse("clusters:\n  - name: a\n    namespaces: ['10']\n    context: 10:20\n")
    assert plan.clusters[0].context == "10:20"


def test_load_plan_reports_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PlanError) as info:
        load_plan(tmp_path / "absent.yaml")
    assert str(tmp_path / "absent.yaml") in str(info.value)


def test_examples_parse_and_round_trip(examples: Path) -> None:
    files = sorted(examples.glob("*.yaml"))
    assert len(files) >= 5
    for path in files:
        plan = load_plan(path)
        again = parse_plan(dump_plan(plan), file="again.yaml")
        assert plan_to_dict(again) == plan_to_dict(plan), path.name
        from_json = parse_plan(dump_plan(plan, as_json=True), file="again.json")
        assert plan_to_dict(from_json) == plan_to_dict(plan), path.name
        assert json.loads(dump_plan(plan, as_json=True))["version"] == 1


def test_dump_header_is_a_comment() -> None:
    plan = parse("clusters:\n  - name: a\n")
    text = dump_plan(plan, header="first\nsecond")
    assert text.startswith("# first\n# second\n")
    assert parse_plan(text).clusters[0].name == "a"


def test_empty_list_values() -> None:
    plan = parse("clusters:\n  - name: a\n    pods:\n    nodes: ~\n")
    assert plan.clusters[0].pods == () and plan.clusters[0].nodes == ()
    assert error_of("clusters:\n  - name: a\n    pods: ''\n").path == "clusters[0].pods"

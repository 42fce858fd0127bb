"""Scenario Addressing rules and VIP black holes, in network namespaces (docs/lab.md).

A client network at 10.32.0.7 inside the cluster's Service range 10.32.0.0/16 connects straight to
a pod: the SYN arrives, the pod answers, and the answer, addressed into the Service range, is
dropped by its node's Service rules (the kube-proxy stand-in's counter says so). `interkube check`
flagged it (R3); the plan with the Service range moved as check suggests builds a lab where the
same connection works.
"""

from __future__ import annotations

import pytest
from plans import BLACK_HOLE, black_hole_fixed

from interkube.lab.layout import NODE_TABLE
from interkube.netplan.parse import load_plan, parse_plan
from interkube.netplan.rules import Severity, check
from testkit.lab import LabUp


def dropped(lab: object, node: str) -> int:
    """Packets the node's Service rules swallowed (the vip_black_hole chain's counter)."""
    out = lab.exec("database", node, ["nft", "list", "chain", "ip", NODE_TABLE, "vip_black_hole"])  # type: ignore[attr-defined]
    assert out.returncode == 0, out.stderr
    return sum(int(line.split("packets ")[1].split()[0]) for line in out.stdout.splitlines() if "packets " in line)


def test_the_reply_to_a_client_inside_the_service_range_vanishes(lab_up: LabUp) -> None:
    report = check(load_plan(BLACK_HOLE))
    r3 = report.by_rule("R3", Severity.ERROR)
    assert r3 and "10.32.0.7/32" in r3[0].message
    lab = lab_up(BLACK_HOLE)
    pod = lab.cluster("database").pod("web-0")
    node = f"node{pod.node}"
    before = dropped(lab, node)
    with pytest.raises(OSError):
        lab.connect("client", "host", pod.addresses[0], pod.port or 0, timeout=3)
    assert dropped(lab, node) > before
    # The pod did answer: from inside the cluster, where replies do not go into the Service
    # range, the same pod is reached.
    assert lab.connect("database", "client", pod.addresses[0], pod.port or 0) == "database/web-0"


def test_moving_the_service_range_as_check_suggests_fixes_the_lab(lab_up: LabUp) -> None:
    text = black_hole_fixed()
    assert check(parse_plan(text)).ok
    lab = lab_up(text)
    for name in ("web-0", "cb-example-1"):
        pod = lab.cluster("database").pod(name)
        assert lab.connect("client", "host", pod.addresses[0], pod.port or 0) == f"database/{name}"

"""The terminal table, the JSON and the SVG picture of a check."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from interkube.netplan.allocate import Sizing, allocate
from interkube.netplan.parse import load_plan
from interkube.netplan.report import render_json, render_text
from interkube.netplan.rules import Report, check
from interkube.netplan.svg import render_svg

SVG = "{http://www.w3.org/2000/svg}"


def black_hole(examples: Path) -> Report:
    return check(load_plan(examples / "001_vip_black_hole.yaml"))


def test_text_lists_plan_findings_and_verdict(examples: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Locations name the plan file relative to the working directory, as a compiler would, so
    # the checkout's own path (long in CI) never pushes a line past the width.
    monkeypatch.chdir(examples.parent)
    text = render_text(black_hole(examples), width=100)
    lines = text.splitlines()
    assert lines[0].split() == ["CLUSTER", "NETWORKING", "NODES", "PODS", "SERVICES", "DNS"]
    assert lines[1].split()[:5] == ["database", "routed", "172.16.0.0/24", "10.0.0.0/16", "10.32.0.0/16"]
    assert any(line.startswith("error    R3    Service range 10.32.0.0/16") for line in lines)
    assert any("fix: move the Service range of cluster database" in line for line in lines)
    assert any(line.strip() == "at:  plans/001_vip_black_hole.yaml:14 clusters[0].services[0]" for line in lines)
    assert lines[-1] == "1 error, 0 warnings, 0 notes: FAILED"
    assert max(len(line) for line in lines if not line.startswith(("CLUSTER", "database"))) <= 100


def test_text_marks_inferred_and_assumed_values(check_yaml: Callable[[str], Report]) -> None:
    report = check_yaml("""
        clusters:
          - {name: a, nodes: [192.168.0.5/32], services: [10.96.0.0/20], inferred: [networking, services]}
        """)
    row = render_text(report).splitlines()[1]
    assert "routed (assumed)" in row and "10.96.0.0/20 (inferred)" in row


def test_json_has_counts_and_findings(examples: Path) -> None:
    data = json.loads(render_json(black_hole(examples)))
    assert data["ok"] is False
    assert data["counts"] == {"error": 1, "warning": 0, "info": 0}
    assert data["clusters"] == ["database"]
    [finding] = data["findings"]
    assert finding["rule"] == "R3" and finding["severity"] == "error"
    assert finding["title"] == "Service VIP ranges hold no real address"
    assert {i["value"] for i in finding["involved"]} == {"10.32.0.0/16", "10.32.0.7/32"}
    assert {i["role"] for i in finding["involved"]} == {"services", "external"}


def parse_svg(text: str) -> ET.Element:
    return ET.fromstring(text.encode("utf-8"))


def test_svg_is_well_formed_names_every_cluster_and_marks_conflicts(examples: Path) -> None:
    root = parse_svg(render_svg(black_hole(examples)))
    assert root.tag == f"{SVG}svg"
    owners = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "owner"]
    assert owners == ["database", "client"]
    conflicts = [r for r in root.iter(f"{SVG}rect") if (r.get("class") or "").startswith("conflict")]
    assert [c.get("class") for c in conflicts] == ["conflict R3"]
    ranges = [r for r in root.iter(f"{SVG}rect") if (r.get("class") or "").startswith("range")]
    assert sorted(r.get("class") for r in ranges) == ["range external", "range nodes", "range pods", "range services"]
    findings = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "finding"]
    assert findings[0].startswith("1. R3 error: Service range 10.32.0.0/16")


def test_svg_conflict_band_covers_the_shared_addresses(examples: Path) -> None:
    root = parse_svg(render_svg(black_hole(examples)))
    rects = {r.get("class"): r for r in root.iter(f"{SVG}rect") if r.get("class")}
    band, client, services = rects["conflict R3"], rects["range external"], rects["range services"]
    x1, x2 = float(band.get("x")), float(band.get("x")) + float(band.get("width"))
    # The band spans the client's /32, which lies inside the Service range.
    assert x1 <= float(client.get("x")) and float(client.get("x")) + float(client.get("width")) <= x2
    assert float(services.get("x")) < x1 and x2 < float(services.get("x")) + float(services.get("width"))


def test_svg_of_every_example_and_a_large_plan_is_well_formed(examples: Path) -> None:
    reports = [check(load_plan(p)) for p in sorted(examples.glob("*.yaml"))]
    reports.append(check(allocate(Sizing(clusters=60, nodes=20, ipv6="ula", ipv6_from_ipv4=True))))
    for report in reports:
        root = parse_svg(render_svg(report))
        named = {t.text for t in root.iter(f"{SVG}text") if t.get("class") == "owner"}
        assert {c.name for c in report.plan.clusters} <= named


def test_svg_escapes_text(check_yaml: Callable[[str], Report]) -> None:
    report = check_yaml("""
        clusters:
          - {name: a, nodes: [10.0.0.0/16]}
        external:
          - {name: b, kind: "<lab & co>", cidrs: [10.0.0.0/24]}
        """)
    svg = render_svg(report)
    parse_svg(svg)
    assert "&lt;lab &amp; co&gt;" in svg


def _converter() -> list[str] | None:
    if shutil.which("rsvg-convert"):
        return ["rsvg-convert", "--format", "png"]
    return None


def test_svg_renders_to_png(examples: Path, tmp_path: Path) -> None:
    svg = render_svg(check(load_plan(examples / "004_ipv6_dual_stack.yaml")))
    source = tmp_path / "plan.svg"
    source.write_text(svg, encoding="utf-8")
    target = tmp_path / "plan.png"
    command = _converter()
    if command is not None:
        subprocess.run([*command, "--output", str(target), str(source)], check=True, timeout=60)
    else:
        cairosvg = pytest.importorskip(
            "cairosvg", reason="no SVG converter: install rsvg-convert (Debian librsvg2-bin) or cairosvg")
        cairosvg.svg2png(url=str(source), write_to=str(target))
    data = target.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    root = parse_svg(svg)
    assert (width, height) == (int(root.get("width")), int(root.get("height")))

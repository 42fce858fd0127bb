"""`lab up` and `lab down`: what up makes, down removes (namespaces, links, nftables tables,
processes), up removes it too when it fails half-way, and the command line drives the same."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from plans import DISCOVERY, FORWARDED

from interkube.errors import LabError
from interkube.lab import build, netns
from interkube.lab.build import Lab
from interkube.lab.layout import NODE_TABLE, PREFIX, Layout
from testkit.lab import LabUp, plan_file, require_lab


def host_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def host_tables() -> set[str]:
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
    return set(out.splitlines())


def device_names(layout: Layout) -> set[str]:
    return {name for a, a_if, b, b_if in layout.veths for name in (a_if, b_if)} | {"br0", "vx0"}


def assert_gone(lab: Lab, pids: list[int], links_before: set[str], tables_before: set[str]) -> None:
    assert netns.existing(f"{PREFIX}-{lab.lab_id}-") == []
    assert [p for p in pids if netns._running(p)] == []
    # Nothing of the lab ever was in this namespace: no device of its names appeared here, and
    # no nftables table (the lab's live in its namespaces, gone with them).
    assert not (host_links() - links_before) & device_names(lab.layout)
    assert not {t for t in host_tables() - tables_before if NODE_TABLE in t or "interkube" in t}


def test_down_leaves_no_namespace_link_table_or_process(tmp_path: Path) -> None:
    require_lab()
    links, tables = host_links(), host_tables()
    lab = Lab.up(DISCOVERY, tmp_path / "state")
    try:
        pids = list(lab.state["pids"].values())
        assert len(pids) == 7  # the agent, three DNS servers, three proxies
        assert sorted(netns.existing(f"{PREFIX}-{lab.lab_id}-")) == sorted(lab.namespaces)
        node = lab.cluster("east").nodes[0].netns
        rules = subprocess.run(["ip", "netns", "exec", node, "nft", "list", "tables"], capture_output=True, text=True)
        assert f"table ip {NODE_TABLE}" in rules.stdout
        router = lab.exec("east", "router", ["nft", "list", "tables"])
        assert "table ip interkube" in router.stdout  # the proxy's
    finally:
        failed = lab.down()
    assert failed == []
    assert_gone(lab, pids, links, tables)
    assert not (tmp_path / "state").exists()


def test_a_failed_up_removes_what_it_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_lab()
    links, tables = host_links(), host_tables()
    made: list[Lab] = []

    def broken_corefile(layout: Layout, name: str, *args: object, **kw: object) -> str:
        made.append(Lab.load(tmp_path / "state"))
        raise LabError("a failure after the namespaces, links and rules were made")

    monkeypatch.setattr(build, "corefile", broken_corefile)
    with pytest.raises(LabError, match="a failure after"):
        Lab.up(FORWARDED, tmp_path / "state")
    lab = made[0]
    assert lab.namespaces and lab.state["pids"]  # the agent had started
    assert_gone(lab, list(lab.state["pids"].values()), links, tables)


def test_a_second_up_in_the_same_state_is_refused(lab_up: LabUp, tmp_path: Path) -> None:
    lab = lab_up(FORWARDED)
    with pytest.raises(LabError, match="already up"):
        Lab.up(FORWARDED, lab.state_dir)


def test_the_command_line(tmp_path: Path) -> None:
    require_lab()
    state = tmp_path / "state"
    cli = [sys.executable, "-m", "interkube", "lab"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *argv], capture_output=True, text=True, env=env, timeout=300)

    up = run("up", str(plan_file(tmp_path, FORWARDED)), "--state", str(state))
    try:
        assert up.returncode == 0, up.stderr
        assert up.stdout.startswith("lab ") and " up in " in up.stdout
        status = run("status", "--json", "--svg", str(tmp_path / "lab.svg"), "--state", str(state))
        assert status.returncode == 0, status.stderr
        data = json.loads(status.stdout)
        assert data["clusters"]["cluster1"]["forward"] == {"remote": "cluster2"}
        svg = (tmp_path / "lab.svg").read_text()
        assert svg.startswith("<svg") and "cluster2 (routed): router" in svg and "interkube serve" in svg
        dns = data["clusters"]["cluster2"]["dns"]["addresses"][0]
        dig = run("--state", str(state), "exec", "cluster1", "client", "--", "dig", "+short", "+time=5", f"@{dns}",
                  "web.shop.svc.cluster.local")
        assert dig.stdout.strip() == data["clusters"]["cluster2"]["services"][2]["cluster_ips"][0], dig.stderr
    finally:
        down = run("down", "--state", str(state))
    assert down.returncode == 0, down.stderr
    assert run("status", "--state", str(state)).returncode == 1

"""The command line: --version, serve's flags, config errors that start nothing, the default."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import dns.rcode
import pytest

from interkube import __version__
from interkube.server import registry
from testkit.servers import free_port, interkube_process, process_output, query


def run(*args: str, cwd: Path | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "interkube", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def test_version() -> None:
    out = run("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"interkube {__version__}"


def test_no_subcommand_prints_help_and_fails() -> None:
    out = run()
    assert out.returncode == 2 and "serve" in out.stderr


def test_plugins_lists_execution_order() -> None:
    out = run("serve", "-plugins")
    assert out.returncode == 0
    listed = out.stdout.split()
    assert listed == registry.available()
    assert listed.index("errors") < listed.index("log") < listed.index("forward")


def port_is_free(port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def test_config_error_names_file_line_and_starts_nothing(tmp_path: Path) -> None:
    port = free_port()
    core = tmp_path / "Corefile"
    core.write_text(f"a.example:{port} {{\n    bind 127.0.0.1\n    errors\n}}\n"
                    f"b.example:{port} {{\n    bind 127.0.0.1\n    forwrd . 127.0.0.1\n}}\n")
    out = run("serve", "-conf", str(core))
    assert out.returncode == 1
    assert f"{core}:7: unknown plugin 'forwrd'" in out.stderr
    assert port_is_free(port)  # the valid first block did not start either


@pytest.mark.parametrize("flag", ["-conf", "--conf"])
def test_conf_flag_spellings(tmp_path: Path, flag: str) -> None:
    port = free_port()
    core = tmp_path / "Corefile"
    core.write_text(f".:{port} {{\n    bind 127.0.0.1\n    errors\n}}\n")
    with interkube_process(None, port, args=(flag, str(core))) as proc:
        assert query("x.", "A", port).rcode() == dns.rcode.SERVFAIL
    assert f".:{port} on 127.0.0.1" in process_output(proc)


def test_missing_conf_file_is_an_error(tmp_path: Path) -> None:
    out = run("serve", "--conf", str(tmp_path / "missing"))
    assert out.returncode == 1 and "cannot read Corefile" in out.stderr


def test_dns_port_flag(tmp_path: Path) -> None:
    port = free_port()
    core = tmp_path / "Corefile"
    core.write_text("example.org {\n    bind 127.0.0.1\n    errors\n}\n")
    with interkube_process(core, port, args=("-dns.port", str(port))):
        assert query("a.example.org.", "A", port).rcode() == dns.rcode.SERVFAIL


def test_corefile_in_working_directory_is_used(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "Corefile").write_text(f".:{port} {{\n    bind 127.0.0.1\n    errors\n}}\n")
    with interkube_process(None, port, cwd=tmp_path):
        assert query("x.", "A", port).rcode() == dns.rcode.SERVFAIL


def test_builtin_default_serves_the_two_scenarios_demo(tmp_path: Path) -> None:
    if not all(port_is_free(p) for p in (5353, 5354, 5355)):
        pytest.skip("ports 5353-5355 on 127.0.0.1 are in use; the built-in default needs them")
    with interkube_process(None, 5353, cwd=tmp_path) as proc:
        srv = query("_couchbase._tcp.cb-example-srv.remote.svc.cluster.local", "SRV", 5353)
        assert srv.rcode() == dns.rcode.NOERROR and len(srv.answer[0]) == 3
        assert {rr[0].address for rr in srv.additional} == {"10.1.17.231", "10.1.46.20", "10.1.68.212"}
        local = query("kube-dns.kube-system.svc.cluster.local", "A", 5353)
        assert [rr.address for rr in local.answer[0]] == ["172.20.0.10"]
        # Anything else stays on the machine: the local "cluster DNS" does not serve it.
        assert query("example.com", "A", 5353).rcode() == dns.rcode.REFUSED
        # Discovery across clusters: two clusters' Services on the same port, each under its own
        # domain.
        east = query("_postgres._tcp.db.shop.svc.cluster.east", "SRV", 5353)
        assert sorted(rr.target.to_text() for rr in east.answer[0]) == [
            "db-0.db.shop.svc.cluster.east.", "db-1.db.shop.svc.cluster.east."]
        assert {rr[0].address for rr in east.additional} == {"10.244.2.20", "10.244.2.21"}
        west = query("inventory.shop.svc.cluster.west", "AAAA", 5353)
        assert [rr.address for rr in west.answer[0]] == ["fd00:10:97::20:5"]
        for zone, address in (("east", "10.96.12.40"), ("west", "10.97.12.40")):
            frontend = query(f"frontend.shop.svc.cluster.{zone}", "A", 5353)
            assert [rr.address for rr in frontend.answer[0]] == [address]
        assert query("nope.shop.svc.cluster.west", "A", 5353).rcode() == dns.rcode.NXDOMAIN
        # cluster.all: east (local) answers what it has; west's pods answer what only west has.
        assert [rr.address for rr in query("frontend.shop.svc.cluster.all", "A", 5353).answer[0]] == ["10.96.12.40"]
        merged = query("inventory.shop.svc.cluster.all", "A", 5353)
        assert merged.rcode() == dns.rcode.NOERROR and merged.answer
    out = process_output(proc)
    # The banner names the scenarios it plays, as docs/scenarios.md titles them.
    assert "\nForwarded DNS between clusters:\n" in out
    assert "\nDiscovery across clusters, VIP proxying and the merged domain (its DNS side):\n" in out
    assert "dig @127.0.0.1 -p 5353 SRV _couchbase._tcp.cb-example-srv.remote.svc.cluster.local" in out
    assert "dig @127.0.0.1 -p 5353 kube-dns.kube-system.svc.cluster.local" in out
    assert "dig @127.0.0.1 -p 5353 SRV _postgres._tcp.db.shop.svc.cluster.east" in out
    assert "dig @127.0.0.1 -p 5353 AAAA inventory.shop.svc.cluster.west" in out
    assert "dig @127.0.0.1 -p 5353 inventory.shop.svc.cluster.all" in out


def test_builtin_default_is_not_an_open_resolver() -> None:
    """Its forwarding blocks carry an acl that allows loopback and blocks everyone else."""
    from interkube.plugin.services import Services
    from interkube.server.main import builtin_default
    from interkube.server.runtime import build

    source = builtin_default()
    built = build(source.parse(), source.name, Services())
    for zone in ("remote.svc.cluster.local.", "."):
        _, head = built.chains[("dns", "127.0.0.1", 5353)][zone]
        chain = []
        while head.plugin != "chain":
            chain.append(head)
            head = head.next
        acl = next(h for h in chain if h.plugin == "acl")
        assert chain.index(acl) < [h.plugin for h in chain].index("forward")
        assert acl.decide("127.0.0.1", 1) == 0 and acl.decide("::1", 1) == 0   # allowed
        assert acl.decide("192.0.2.1", 1) == 1 and acl.decide("2001:db8::1", 1) == 1  # blocked

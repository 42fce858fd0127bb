"""NOTIFY to the `to` addresses: when the configuration starts serving, after a zone file's new
serial is loaded, and after a cluster's data changes (whose SOA serial then moves, so that a
secondary told of it transfers again); from the `source` address; retried and logged when not
accepted; rounds of one zone spaced."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import dns.rcode
import dns.rdatatype
import pytest

from interkube.kube import snapshot
from interkube.kube.objects import Namespace, Port, Service
from interkube.plugins.transfer.notify import ATTEMPTS, Notifier
from interkube.plugins.transfer.parse import Secondary
from testkit.processes import stop_process
from testkit.servers import LOOPBACK, aquery, free_port, in_process
from testkit.waiting import until
from testkit.xfr import NotifyListener, is_notify, transfer

ZONE = """\
$TTL 3600
@ IN SOA ns1 hostmaster {serial} 7200 3600 1209600 300
@ IN NS ns1
ns1 IN A 192.0.2.53
www IN A {www}
"""


def zone(serial: int, www: str = "192.0.2.1") -> str:
    return ZONE.format(serial=serial, www=www)


async def test_notify_at_start_and_after_a_new_serial(tmp_path: Path) -> None:
    db = tmp_path / "db"
    db.write_text(zone(1))
    port = free_port()
    async with NotifyListener() as secondary, NotifyListener() as other:
        block = (f"example.org:{port} {{\n bind 127.0.0.1\n transfer {{\n"
                 f"  to 127.0.0.1:{secondary.port} 127.0.0.1:{other.port} *\n }}\n"
                 f" file {db} {{\n  reload 50ms\n }}\n}}\n")
        async with in_process(block):
            await until(lambda: secondary.notified("example.org.") and other.notified("example.org."),
                        "NOTIFY at start to both addresses")
            first = secondary.notified("example.org.")[0]
            assert is_notify(first, "example.org.")
            assert len(first.to_wire()) == 29  # header and question: nothing else, no EDNS
            # The secondary asks for the SOA: the serial it would compare.
            soa = await aquery("example.org", "SOA", port)
            assert soa.answer[0][0].serial == 1
            db.write_text(zone(2, "192.0.2.2"))
            await until(lambda: len(secondary.notified("example.org.")) == 2, "NOTIFY after the reload")
            assert is_notify(secondary.notified("example.org.")[1], "example.org.")
            got = await transfer(port, "example.org")
            assert got.records[0][0].serial == 2 and "192.0.2.2" in " ".join(got.texts())
            await until(lambda: len(other.notified("example.org.")) == 2, "the other address told too")


async def test_notify_from_the_source_address(tmp_path: Path) -> None:
    db = tmp_path / "db"
    db.write_text(zone(1))
    port = free_port()
    async with NotifyListener() as secondary:
        block = (f"example.org:{port} {{\n bind 127.0.0.1\n transfer {{\n  to 127.0.0.1:{secondary.port}\n"
                 f"  source 127.0.0.7\n }}\n file {db}\n}}\n")
        async with in_process(block):
            await until(lambda: secondary.received, "a NOTIFY")
            assert secondary.received[0][1][0] == "127.0.0.7"


async def test_a_notify_not_accepted_is_tried_again_and_logged(
        tmp_path: Path, interkube_caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "db"
    db.write_text(zone(1))
    port = free_port()
    async with NotifyListener(rcode=dns.rcode.REFUSED) as secondary:
        block = (f"example.org:{port} {{\n bind 127.0.0.1\n transfer {{\n  to 127.0.0.1:{secondary.port}\n }}\n"
                 f" file {db}\n}}\n")
        async with in_process(block):
            await until(lambda: "was not accepted" in interkube_caplog.text, "the failure logged")
            assert len(secondary.received) == ATTEMPTS
    assert (f"NOTIFY for zone example.org. was not accepted by 127.0.0.1:{secondary.port}: rcode was REFUSED"
            in interkube_caplog.text)


async def test_a_reloaded_configuration_tells_its_own_secondaries(tmp_path: Path) -> None:
    """A new Corefile is a new start (as CoreDNS's OnStartup): its `to` addresses are told, and
    transfer as it says; the old configuration's stanza is gone."""
    db = tmp_path / "db"
    db.write_text(zone(1))
    port = free_port()
    async with NotifyListener() as first, NotifyListener() as second:
        def block(secondary: NotifyListener) -> str:
            return (f"example.org:{port} {{\n bind 127.0.0.1\n transfer {{\n  to 127.0.0.1:{secondary.port}"
                    f" 127.0.0.{2 if secondary is second else 3}\n }}\n file {db}\n}}\n")

        async with in_process(block(first)) as server:
            await until(lambda: first.notified("example.org."), "the first configuration's NOTIFY")
            assert (await transfer(port, "example.org", source="127.0.0.3")).rcode == "NOERROR"
            Path(server.source.path).write_text(block(second))
            assert await server.reload()
            await until(lambda: second.notified("example.org."), "the new configuration's NOTIFY")
            assert (await transfer(port, "example.org", source="127.0.0.2")).rcode == "NOERROR"
            assert (await transfer(port, "example.org", source="127.0.0.3")).rcode == "REFUSED"
            assert len(first.notified("example.org.")) == 1


async def test_one_worker_of_several_tells_the_secondaries(tmp_path: Path) -> None:
    """`interkube serve --workers 2`: both workers answer transfers, the first alone sends
    NOTIFY (one server, one NOTIFY per change)."""
    db = tmp_path / "db"
    db.write_text(zone(1))
    port = free_port()
    async with NotifyListener() as secondary:
        core = tmp_path / "Corefile"
        core.write_text(f"example.org:{port} {{\n bind 127.0.0.1\n transfer {{\n  to 127.0.0.1:{secondary.port}\n"
                        f" }}\n file {db} {{\n  reload 1s\n }}\n}}\n")
        proc = subprocess.Popen([sys.executable, "-m", "interkube", "serve", "-conf", str(core), "--workers", "2"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            await until(lambda: len(workers_of(proc.pid)) == 2, "two workers", alive=lambda: proc.poll() is None)
            await until(lambda: secondary.notified("example.org."), "NOTIFY at start")
            serials = [await serial_by_transfer(port) for _ in range(20)]  # new connections: both workers
            assert serials == [1] * 20
            # Both serve (each sent its NOTIFY at start, if it sends any): one came.
            assert len(secondary.notified("example.org.")) == 1
            db.write_text(zone(2))
            await until(lambda: serials_are(port, 2), "both workers serving serial 2")
            await until(lambda: len(secondary.notified("example.org.")) >= 2, "NOTIFY of the reload")
            assert len(secondary.notified("example.org.")) == 2
        finally:
            stop_process(proc)


async def serial_by_transfer(port: int) -> int:
    got = await transfer(port, "example.org")
    assert got.rcode == "NOERROR"
    return int(got.records[0][0].serial)


async def serials_are(port: int, serial: int, connections: int = 20) -> bool:
    """Whether ``connections`` new connections in a row (spread over the workers) all transfer
    ``serial``."""
    return all([await serial_by_transfer(port) == serial for _ in range(connections)])


def workers_of(pid: int) -> list[str]:
    return subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout.split()


async def test_changes_during_a_round_make_one_more_round() -> None:
    """Changes told before a round starts are in it; those told while it runs (or in the
    interval after it) make one more round, however many they are."""
    async with NotifyListener() as secondary:
        notifier = Notifier((Secondary(LOOPBACK, secondary.port),), min_interval=0.2)
        for _ in range(10):
            notifier.notify("example.org.")
        notifier.notify("example.net.")
        await until(lambda: secondary.notified("example.org."), "the first round")
        for _ in range(10):
            notifier.notify("example.org.")
        await until(lambda: not notifier._rounds, "the rounds over")
        assert len(secondary.notified("example.org.")) == 2
        assert len(secondary.notified("example.net.")) == 1
        await notifier.stop()
        notifier.notify("example.org.")  # stopped: nothing more
        assert not notifier._rounds


# --- kubernetes ---------------------------------------------------------------------------------


def service(name: str, ip: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "app", "resourceVersion": "1", "uid": f"uid-{name}"},
            "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip],
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}


def write_snapshot(path: Path, *services: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": list(services)}))
    tmp.replace(path)


def cluster_block(port: int, secondary: NotifyListener, snap: Path) -> str:
    return (f"cluster.local:{port} {{\n bind 127.0.0.1\n transfer {{\n  to 127.0.0.1:{secondary.port}\n }}\n"
            f" kubernetes cluster.local {{\n  snapshot {snap}\n }}\n}}\n")


async def test_a_cluster_change_notifies_and_moves_the_serial(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot, "CHECK_INTERVAL", 0.05)
    snap = tmp_path / "cluster.json"
    write_snapshot(snap, service("web", "10.96.0.10"))
    port = free_port()
    async with NotifyListener() as secondary, in_process(cluster_block(port, secondary, snap)):
        await until(lambda: secondary.notified("cluster.local."), "NOTIFY at start")
        before = (await aquery("cluster.local", "SOA", port)).answer[0][0].serial
        nx_before = (await aquery("nope.app.svc.cluster.local", "A", port)).authority[0][0].serial
        assert nx_before == before
        up_to_date = await transfer(port, "cluster.local", "IXFR", serial=before)
        assert [r.rdtype for r in up_to_date.records] == [dns.rdatatype.SOA]

        write_snapshot(snap, service("web", "10.96.0.10"), service("api", "10.96.0.11"))
        await until(lambda: len(secondary.notified("cluster.local.")) == 2, "NOTIFY after the change")
        after = (await aquery("cluster.local", "SOA", port)).answer[0][0].serial
        assert after > before
        # Answers that show the serial show the new one (the kept NXDOMAIN was dropped).
        assert (await aquery("nope.app.svc.cluster.local", "A", port)).authority[0][0].serial == after
        # The secondary's IXFR with the old serial gets the whole new zone.
        got = await transfer(port, "cluster.local", "IXFR", serial=before)
        assert got.complete and got.records[0][0].serial == after
        assert "api.app.svc.cluster.local. 5 IN A 10.96.0.11" in got.texts()


async def test_a_watch_event_moves_the_serial_when_it_changes_what_a_transfer_holds(tmp_path: Path) -> None:
    """One object at a time, as a watch applies them: a Namespace leaves the serial (and the
    answers kept) alone and tells nobody; a Service moves it, drops the kept answers that show
    it, and is told."""
    snap = tmp_path / "cluster.json"
    write_snapshot(snap, service("web", "10.96.0.10"))
    port = free_port()
    async with NotifyListener() as secondary, in_process(cluster_block(port, secondary, snap)) as server:
        handlers = server.instance.built.handlers
        cluster = next(h for h in handlers if h.plugin == "kubernetes").cluster
        notifier = next(h for h in handlers if h.plugin == "transfer").stanzas[0].notifier
        await until(lambda: secondary.notified("cluster.local.") and not notifier._rounds,
                    "the NOTIFY of the start, and its round over")
        before = (await aquery("cluster.local", "SOA", port)).answer[0][0].serial
        assert (await aquery("nope.app.svc.cluster.local", "A", port)).authority[0][0].serial == before

        cluster.apply("namespaces", ("", "other"), Namespace("other"))
        assert not notifier._rounds
        assert (await aquery("cluster.local", "SOA", port)).answer[0][0].serial == before

        api = Service("app", "api", "ClusterIP", ("10.96.0.11",), False, (Port("http", "TCP", 80),))
        cluster.apply("services", ("app", "api"), api)
        assert notifier._rounds  # told at once
        after = (await aquery("cluster.local", "SOA", port)).answer[0][0].serial
        assert after > before
        assert (await aquery("nope.app.svc.cluster.local", "A", port)).authority[0][0].serial == after
        await until(lambda: len(secondary.notified("cluster.local.")) == 2, "NOTIFY of the change")
        got = await transfer(port, "cluster.local", "IXFR", serial=after)
        assert [r.rdtype for r in got.records] == [dns.rdatatype.SOA]


async def test_without_transfer_the_cluster_serial_stays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nobody transfers the zone: the serial is the last full list's (docs/divergences.md D5),
    so that a change keeps the negative answers it does not touch."""
    monkeypatch.setattr(snapshot, "CHECK_INTERVAL", 0.05)
    snap = tmp_path / "cluster.json"
    write_snapshot(snap, service("web", "10.96.0.10"))
    port = free_port()
    async with in_process(f"cluster.local:{port} {{\n bind 127.0.0.1\n kubernetes cluster.local {{\n"
                          f"  snapshot {snap}\n }}\n}}\n") as server:
        handler = next(h for h in server.instance.built.handlers if h.plugin == "kubernetes")
        assert handler.zone_serial is None
        assert (await transfer(port, "cluster.local")).rcode == "REFUSED"


@pytest.fixture(autouse=True)
def _transfer_logs(interkube_caplog: pytest.LogCaptureFixture) -> None:
    interkube_caplog.set_level(logging.INFO, logger="interkube.plugin.transfer")

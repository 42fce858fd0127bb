"""Every example of the transfer plugin's README, started as written (on a free port, its
secondaries at 127.0.0.1:5300 and [::1]:5300 being NOTIFY listeners on free ports) and asked
what the README says it answers."""

from __future__ import annotations

import shutil
from pathlib import Path

import dns.asyncquery
import dns.rcode
import pytest

from testkit.readme import on_port, readme_examples
from testkit.servers import free_port, in_process
from testkit.waiting import until
from testkit.xfr import NotifyListener, is_notify, transfer, transfer_query

EXAMPLES = readme_examples("transfer")
ZONE = """\
$TTL 3600
@ IN SOA ns1 hostmaster {serial} 7200 3600 1209600 300
@ IN NS ns1
ns1 IN A 192.0.2.53
www IN A 192.0.2.1
"""


def test_the_readme_has_the_examples_tested_here() -> None:
    assert len(EXAMPLES) == 3


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The examples' relative file names are read from here."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "db.example.org").write_text(ZONE.format(serial=1))
    return tmp_path


async def test_a_zone_file_for_two_secondaries(workdir: Path) -> None:
    port = free_port()
    async with NotifyListener("127.0.0.1") as v4, NotifyListener("::1") as v6:
        text = on_port(EXAMPLES[0], port).replace("127.0.0.1:5300", f"127.0.0.1:{v4.port}").replace(
            "[::1]:5300", f"[::1]:{v6.port}").replace("reload 10s", "reload 100ms")
        async with in_process(text):
            await until(lambda: v4.notified("example.org.") and v6.notified("example.org."), "NOTIFY at start")
            got = await transfer(port, "example.org")
            texts = got.texts()
            assert got.complete and texts[0] == texts[-1] and " SOA " in texts[0] and len(texts) == 5
            assert (await transfer(port, "example.org", host="::1")).rcode == "NOERROR"
            assert (await transfer(port, "example.org", source="127.0.0.2")).rcode == "REFUSED"
            udp = await dns.asyncquery.udp(transfer_query("example.org"), "127.0.0.1", port=port, timeout=3)
            assert udp.rcode() == dns.rcode.REFUSED
            (workdir / "db.example.org").write_text(ZONE.format(serial=2))
            await until(lambda: len(v4.notified("example.org.")) == 2 and len(v6.notified("example.org.")) == 2,
                        "NOTIFY of the new serial")
            assert all(is_notify(m, "example.org.") for m in v4.notified("example.org."))


async def test_a_cluster_zone_behind_acl(workdir: Path) -> None:
    shutil.copy(Path(__file__).parents[1] / "kubernetes" / "data" / "cluster.yaml", workdir / "cluster.yaml")
    port = free_port()
    async with in_process(on_port(EXAMPLES[1], port)):
        got = await transfer(port, "cluster.local")
        assert got.complete and "web.app.svc.cluster.local. 5 IN A 10.96.0.10" in got.texts()
        assert "_http._tcp.hl.app.svc.cluster.local. 5 IN SRV 0 50 8080 pet-0.hl.app.svc.cluster.local." in got.texts()
        # ::1 is in no allowed network: acl blocks it (REFUSED), before transfer is asked.
        blocked = await transfer(port, "cluster.local", host="::1")
        assert blocked.rcode == "REFUSED" and not blocked.records
        assert (await transfer(port, "cluster.local", "IXFR", serial=1, host="::1")).rcode == "REFUSED"


async def test_two_zones_two_rules(workdir: Path) -> None:
    port = free_port()
    async with NotifyListener("127.0.0.1") as secondary:
        text = on_port(EXAMPLES[2], port).replace("127.0.0.1:5300", f"127.0.0.1:{secondary.port}")
        async with in_process(text):
            await until(lambda: secondary.received, "NOTIFY at start")
            assert [(m.question[0].name.to_text(), addr[0]) for m, addr in secondary.received] == [
                ("example.org.", "127.0.0.53")]
            assert (await transfer(port, "example.org")).rcode == "NOERROR"
            assert (await transfer(port, "example.org", source="127.0.0.2")).rcode == "REFUSED"
            for source in ("127.0.0.1", "127.0.0.2"):
                net = await transfer(port, "example.net", source=source)
                assert net.rcode == "NOERROR" and net.texts()[1] == "example.net. 3600 IN NS ns1.example.net."

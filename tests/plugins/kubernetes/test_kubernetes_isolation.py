"""Several clusters in one server block: each answers its own zones, and one cluster's failure
never changes another's answers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import pytest

from testkit.fakekube import FakeKube, endpoint_slice, service, write_kubeconfig
from testkit.waiting import until

Running = Any  # tests/plugins/conftest.py's Running: a server in the test's loop
Serve = Callable[[str], Awaitable[Running]]

WEST_QUESTIONS = [
    ("web.app.svc.cluster.west.", "A"), ("web.app.svc.cluster.west.", "AAAA"),
    ("_http._tcp.web.app.svc.cluster.west.", "SRV"), ("hl.app.svc.cluster.west.", "A"),
    ("nope.app.svc.cluster.west.", "A"), ("app.svc.cluster.west.", "A"),
    ("cluster.west.", "SOA"), ("dns-version.cluster.west.", "TXT"),
    # West's addresses in the shared reverse zone: east passes them on (fallthrough).
    ("20.0.96.10.in-addr.arpa.", "PTR"), ("9.2.244.10.in-addr.arpa.", "PTR"),
]


def cluster_objects(third_octet: int) -> list[dict[str, Any]]:
    return [service("app", "web", cluster_ips=[f"10.96.0.{10 * third_octet}"]),
            service("app", "hl", headless=True),
            endpoint_slice("app", "hl-1", "hl", [{"ip": f"10.244.{third_octet}.9", "hostname": "a"}])]


@pytest.fixture
async def clusters() -> AsyncIterator[tuple[FakeKube, FakeKube]]:
    async with FakeKube(watch=True) as east, FakeKube(watch=True) as west:
        east.add_all(cluster_objects(1))
        west.add_all(cluster_objects(2))
        yield east, west


def corefile(kubeconfig: Path) -> str:
    stanzas = "".join(f"""    kubernetes cluster.{name} in-addr.arpa {{
        kubeconfig {kubeconfig} {name}
        fallthrough in-addr.arpa
        startup_timeout 2s
    }}
""" for name in ("east", "west"))
    return ".:PORT {\n    bind 127.0.0.1\n" + stanzas + "}\n"


async def answers(k: Running) -> list[bytes]:
    """The response bytes to each question (fixed IDs), exactly as the server sent them."""
    return [await k.raw(dns.message.make_query(name, rdtype, id=1000 + i, use_edns=0).to_wire())
            for i, (name, rdtype) in enumerate(WEST_QUESTIONS)]


def stanzas(k: Running) -> list[Any]:
    return [h for h in k.server.instance.built.handlers if h.plugin == "kubernetes"]


async def test_each_stanza_answers_its_own_zones(clusters: tuple[FakeKube, FakeKube], serve: Serve,
                                                 tmp_path: Path) -> None:
    east, west = clusters
    k = await serve(corefile(write_kubeconfig(tmp_path / "kc", {"east": east, "west": west})))
    for zone, address in (("east", "10.96.0.10"), ("west", "10.96.0.20")):
        msg = await k.query(f"web.app.svc.cluster.{zone}", "A")
        assert [rd.address for rd in msg.answer[0]] == [address]
    ptr = await k.query("20.0.96.10.in-addr.arpa", "PTR")  # east has no such address: passed to west
    assert ptr.answer[0][0].target.to_text() == "web.app.svc.cluster.west."
    assert (await k.query("web.app.svc.cluster.north", "A")).rcode() == dns.rcode.SERVFAIL  # nobody's zone
    assert sorted(h.cluster.name for h in stanzas(k)) == ["east", "west"]
    assert k.server.services.not_ready() == []


async def test_an_unreachable_cluster_leaves_the_others_answers_byte_identical(
        clusters: tuple[FakeKube, FakeKube], serve: Serve, tmp_path: Path) -> None:
    east, west = clusters
    k = await serve(corefile(write_kubeconfig(tmp_path / "kc", {"east": east, "west": west})))
    east_handler = next(h for h in stanzas(k) if h.cluster.name == "east")
    await until(lambda: east.watchers == 3, "east's watches (Services, EndpointSlices, Namespaces)")
    before = await answers(k)
    assert dns.message.from_wire(before[0]).answer  # the questions do get answers
    await east.pause()
    await until(lambda: east_handler.cluster.down is not None, "east noticed unreachable")
    after = await answers(k)
    assert after == before
    # East itself answers from its last data meanwhile.
    msg = await k.query("web.app.svc.cluster.east", "A")
    assert [rd.address for rd in msg.answer[0]] == ["10.96.0.10"]
    assert k.server.services.not_ready() == []  # synced once: still ready


async def test_a_cluster_that_never_syncs_fails_only_its_own_zones(clusters: tuple[FakeKube, FakeKube],
                                                                   serve: Serve, tmp_path: Path) -> None:
    east, west = clusters
    kubeconfig = write_kubeconfig(tmp_path / "kc", {"east": east, "west": west})
    await east.pause()
    k = await serve(corefile(kubeconfig))
    assert (await k.query("web.app.svc.cluster.east", "A")).rcode() == dns.rcode.SERVFAIL
    assert k.server.services.not_ready() == ["kubernetes:east"]
    msg = await k.query("web.app.svc.cluster.west", "A")
    assert msg.rcode() == dns.rcode.NOERROR and [rd.address for rd in msg.answer[0]] == ["10.96.0.20"]
    ptr = await k.query("20.0.96.10.in-addr.arpa", "PTR")  # through east's fallthrough, even unsynced
    assert ptr.answer[0][0].target.to_text() == "web.app.svc.cluster.west."
    nx = await k.query("nope.app.svc.cluster.west", "A")
    assert nx.rcode() == dns.rcode.NXDOMAIN

"""autopath @kubernetes in a running server: a cluster from a snapshot file whose pods have
127.0.3.x addresses, queries sent from those addresses (the client socket bound to them), the
bare names forwarded to a fake upstream on loopback.

The pod `client` (127.0.3.5) is in namespace `shop`, `worker` (127.0.3.7) in `data`, `leaving`
(127.0.3.6) is being deleted. The host's search domains come from a resolv.conf of the test's
(searchpath.RESOLV_CONF), not the machine's.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from prometheus_client import generate_latest

from interkube.kube import snapshot
from interkube.plugin import searchpath
from interkube.plugins.autopath import handler as autopath_handler
from testkit.fakekube import endpoint_slice, pod, service, write_snapshot
from testkit.fakeupstream import FakeUpstream
from testkit.waiting import until

Running = Any  # tests/plugins/conftest.py's Running
Serve = Callable[[str], Awaitable[Running]]

CLIENT = "127.0.3.5"      # pod shop/client
LEAVING = "127.0.3.6"     # pod data/leaving, terminating
WORKER = "127.0.3.7"      # pod data/worker
NOBODY = "127.0.0.1"
SHOP = "shop.svc.cluster.local"


def objects(client_namespace: str = "shop") -> list[dict[str, Any]]:
    return [
        service("shop", "web", cluster_ips=["10.96.0.10"]),
        service("data", "db", cluster_ips=["10.96.0.20"], ports=[("pg", 5432, "TCP")]),
        endpoint_slice("data", "db-a", "db", [{"ip": "10.244.0.20"}], ports=[("pg", 5432, "TCP")]),
        service("data", "ext", external_name="www.example.com", ports=[]),
        pod(client_namespace, "client", CLIENT),
        pod("data", "leaving", LEAVING, terminating=True),
        pod("data", "worker", WORKER),
    ]


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    up = await FakeUpstream().start()
    up.behaviour.records = {("www.example.com.", "A"): ["192.0.2.1"], ("intranet.corp.example.", "A"): ["192.0.2.7"]}
    yield up
    await up.stop()


@pytest.fixture
def host_resolv_conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The host's resolv.conf as the kubernetes stanza reads it: no search domain unless a test writes one."""
    path = tmp_path / "resolv.conf"
    path.write_text("nameserver 192.0.2.53\n")
    monkeypatch.setattr(searchpath, "RESOLV_CONF", path)
    return path


def corefile(snap: Path, up: FakeUpstream, *, pods: str = "verified", autopath: str = "@kubernetes",
             cache: bool = False) -> str:
    return (f".:PORT {{\n    bind 127.0.0.1\n    autopath {autopath}\n"
            + ("    cache 30\n" if cache else "")
            + f"    kubernetes cluster.local {{\n        snapshot {snap}\n        pods {pods}\n    }}\n"
            f"    forward . {up.address}\n}}\n")


@pytest.fixture
async def server(serve: Serve, tmp_path: Path, upstream: FakeUpstream, host_resolv_conf: Path) -> Running:
    snap = write_snapshot(tmp_path / "cluster.yaml", objects())
    return await serve(corefile(snap, upstream))


async def ask(srv: Running, name: str, source: str, rdtype: str = "A", *, tcp: bool = False,
              edns: bool = False) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, use_edns=0 if edns else None)
    if tcp:
        return await dns.asyncquery.tcp(q, "127.0.0.1", port=srv.port, timeout=3, source=source)
    return await dns.asyncquery.udp(q, "127.0.0.1", port=srv.port, timeout=3, source=source)


def records(msg: dns.message.Message) -> list[str]:
    return [f"{rrset.name} {rrset.ttl} {dns.rdatatype.to_text(rrset.rdtype)} {rd}"
            for rrset in msg.answer for rd in rrset]


def asked(up: FakeUpstream) -> list[str]:
    return [q.question[0].name.to_text() for _, q in up.queries]


async def test_a_short_name_of_another_namespace_costs_one_query(server: Running, upstream: FakeUpstream) -> None:
    r = await ask(server, f"db.data.{SHOP}", CLIENT)
    assert r.rcode() == dns.rcode.NOERROR
    assert r.question[0].name.to_text() == f"db.data.{SHOP}."
    assert records(r) == [f"db.data.{SHOP}. 5 CNAME db.data.svc.cluster.local.",
                          "db.data.svc.cluster.local. 5 A 10.96.0.20"]
    assert upstream.queries == []  # (found in the cluster: nothing forwarded)
    srv = await ask(server, f"_pg._tcp.db.data.{SHOP}", CLIENT, "SRV")
    assert records(srv)[0] == f"_pg._tcp.db.data.{SHOP}. 5 CNAME _pg._tcp.db.data.svc.cluster.local."
    assert "SRV" in records(srv)[1] and srv.additional


async def test_the_own_namespace_answers_unchanged(server: Running) -> None:
    mine, anyone = await ask(server, f"web.{SHOP}", CLIENT), await ask(server, f"web.{SHOP}", NOBODY)
    assert records(mine) == records(anyone) == [f"web.{SHOP}. 5 A 10.96.0.10"]


async def test_a_name_outside_the_cluster_is_forwarded_once(server: Running, upstream: FakeUpstream) -> None:
    r = await ask(server, f"www.example.com.{SHOP}", CLIENT)
    assert records(r) == [f"www.example.com.{SHOP}. 30 CNAME www.example.com.", "www.example.com. 30 A 192.0.2.1"]
    assert asked(upstream) == ["www.example.com."]


async def test_a_name_that_is_nowhere_gets_its_own_nxdomain(server: Running, upstream: FakeUpstream) -> None:
    r = await ask(server, f"nope.{SHOP}", CLIENT)
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert r.question[0].name.to_text() == f"nope.{SHOP}." and r.authority[0].name.to_text() == "cluster.local."
    assert asked(upstream) == ["nope."]  # (the walk's last name: the name as written)


@pytest.mark.parametrize("source", [NOBODY, LEAVING], ids=["no-pod", "terminating-pod"])
async def test_a_client_that_is_no_running_pod_is_not_walked(server: Running, upstream: FakeUpstream,
                                                             source: str) -> None:
    r = await ask(server, f"db.data.{SHOP}", source)
    assert r.rcode() == dns.rcode.NXDOMAIN and upstream.queries == []


async def test_each_pod_walks_its_own_namespace(server: Running) -> None:
    r = await ask(server, "web.shop.data.svc.cluster.local", WORKER)
    assert records(r) == ["web.shop.data.svc.cluster.local. 5 CNAME web.shop.svc.cluster.local.",
                          "web.shop.svc.cluster.local. 5 A 10.96.0.10"]
    # A name under another namespace's domain than the pod's is not walked.
    assert (await ask(server, f"db.data.{SHOP}", WORKER)).rcode() == dns.rcode.NXDOMAIN


async def test_the_answer_keeps_the_clients_question_its_edns_and_tcp(server: Running) -> None:
    r = await ask(server, f"DB.Data.{SHOP.upper()}", CLIENT, tcp=True, edns=True)
    assert r.question[0].name.to_text() == f"DB.Data.{SHOP.upper()}."
    assert r.edns == 0 and r.flags & dns.flags.AA
    assert [rrset.rdtype for rrset in r.answer] == [dns.rdatatype.CNAME, dns.rdatatype.A]


async def test_an_externalname_found_on_the_walk_keeps_its_cname(server: Running) -> None:
    r = await ask(server, f"ext.data.{SHOP}", CLIENT)
    assert records(r) == [f"ext.data.{SHOP}. 5 CNAME ext.data.svc.cluster.local.",
                          "ext.data.svc.cluster.local. 5 CNAME www.example.com."]


async def test_the_hosts_search_domains_come_after_the_cluster_ones(
        serve: Serve, tmp_path: Path, upstream: FakeUpstream, host_resolv_conf: Path) -> None:
    host_resolv_conf.write_text("nameserver 192.0.2.53\nsearch Corp.Example.\noptions ndots:2\n")
    srv = await serve(corefile(write_snapshot(tmp_path / "cluster.yaml", objects()), upstream))
    r = await ask(srv, f"intranet.{SHOP}", CLIENT)
    assert records(r) == [f"intranet.{SHOP}. 30 CNAME intranet.corp.example.", "intranet.corp.example. 30 A 192.0.2.7"]
    assert asked(upstream) == ["intranet.corp.example."]


async def test_without_pods_verified_nothing_is_walked(serve: Serve, tmp_path: Path, upstream: FakeUpstream,
                                                       host_resolv_conf: Path) -> None:
    srv = await serve(corefile(write_snapshot(tmp_path / "cluster.yaml", objects()), upstream, pods="insecure"))
    assert (await ask(srv, f"db.data.{SHOP}", CLIENT)).rcode() == dns.rcode.NXDOMAIN


async def test_zones_limit_the_walk(serve: Serve, tmp_path: Path, upstream: FakeUpstream,
                                    host_resolv_conf: Path) -> None:
    snap = write_snapshot(tmp_path / "cluster.yaml", objects())
    srv = await serve(corefile(snap, upstream, autopath="example.org @kubernetes"))
    assert (await ask(srv, f"db.data.{SHOP}", CLIENT)).rcode() == dns.rcode.NXDOMAIN


def slow_path(srv: Running) -> list[str]:
    """The questions autopath's slow path will have been given (its fast path answered the rest)."""
    handler = srv.handler("autopath")
    slow: list[str] = []
    serve_slowly = handler.serve

    async def counted(req: Any) -> bytes:
        slow.append(req.qname_text)
        return await serve_slowly(req)

    handler.serve = counted
    return slow


async def test_a_pods_repeated_lookup_is_answered_from_memory(server: Running, monkeypatch: pytest.MonkeyPatch,
                                                              upstream: FakeUpstream) -> None:
    first = await ask(server, f"db.data.{SHOP}", CLIENT)  # (its answers built: on either path)
    slow = slow_path(server)
    built: list[bytes] = []
    with_cname = autopath_handler.with_cname
    monkeypatch.setattr(autopath_handler, "with_cname", lambda resp, q: built.append(resp) or with_cname(resp, q))
    for _ in range(3):
        again = await ask(server, f"db.data.{SHOP}", CLIENT)
        assert again.answer == first.answer
    # The kubernetes templates answer every name of the walk: no slow path, and the answer with
    # its CNAME is the kept one (nothing parsed again).
    assert slow == [] and built == []
    # A name the walk forwards waits for the upstream: the slow path (no cache in this block).
    assert records(await ask(server, f"www.example.com.{SHOP}", CLIENT))[1] == "www.example.com. 30 A 192.0.2.1"
    assert slow == [f"www.example.com.{SHOP}."]


async def test_a_cached_walk_is_answered_from_memory(serve: Serve, tmp_path: Path, upstream: FakeUpstream,
                                                     host_resolv_conf: Path) -> None:
    srv = await serve(corefile(write_snapshot(tmp_path / "cluster.yaml", objects()), upstream, cache=True))
    slow = slow_path(srv)
    name = f"www.example.com.{SHOP}"
    assert records(await ask(srv, name, CLIENT))[1].endswith("A 192.0.2.1")
    assert slow == [f"{name}."]  # (the upstream waited for)
    # The first answer from the cache differs from the forwarded one (not authoritative): made
    # once more, on either path (the fast path has a budget for building answers).
    await ask(srv, name, CLIENT)
    slow.clear()
    for _ in range(3):
        assert records(await ask(srv, name, CLIENT))[1].endswith("A 192.0.2.1")
    assert slow == [] and asked(upstream) == ["www.example.com."]


async def test_a_kept_answer_takes_the_caches_ttls_without_being_built_again(
        serve: Serve, tmp_path: Path, upstream: FakeUpstream, host_resolv_conf: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    srv = await serve(corefile(write_snapshot(tmp_path / "cluster.yaml", objects()), upstream, cache=True))
    later = [0.0]
    srv.handler("cache").clock = lambda: time.monotonic() + later[0]
    name = f"www.example.com.{SHOP}"
    for _ in range(2):  # (forwarded, then from the cache: not authoritative)
        assert records(await ask(srv, name, CLIENT, edns=True)) == [f"{name}. 30 CNAME www.example.com.",
                                                                    "www.example.com. 30 A 192.0.2.1"]
    slow = slow_path(srv)
    built: list[bytes] = []
    with_cname = autopath_handler.with_cname
    monkeypatch.setattr(autopath_handler, "with_cname", lambda resp, q: built.append(resp) or with_cname(resp, q))
    later[0] = 3.2  # (the cache's entries three seconds older: their TTLs 27)
    r = await ask(srv, name, CLIENT, edns=True)
    assert records(r) == [f"{name}. 27 CNAME www.example.com.", "www.example.com. 27 A 192.0.2.1"]
    assert r.question[0].name.to_text() == f"{name}." and r.edns == 0
    assert built == [] and slow == []


async def test_a_kept_answer_follows_the_chains(server: Running, upstream: FakeUpstream) -> None:
    assert records(await ask(server, f"www.example.com.{SHOP}", CLIENT))[1] == "www.example.com. 30 A 192.0.2.1"
    upstream.behaviour.records[("www.example.com.", "A")] = ["192.0.2.99"]
    assert records(await ask(server, f"www.example.com.{SHOP}", CLIENT))[1] == "www.example.com. 30 A 192.0.2.99"


async def test_a_pod_moved_to_another_namespace_walks_the_new_one(
        serve: Serve, tmp_path: Path, upstream: FakeUpstream, host_resolv_conf: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot, "CHECK_INTERVAL", 0.05)
    snap = write_snapshot(tmp_path / "cluster.yaml", objects())
    srv = await serve(corefile(snap, upstream))
    assert (await ask(srv, f"db.data.{SHOP}", CLIENT)).answer
    write_snapshot(snap, objects(client_namespace="data"))

    async def walks_data() -> bool:
        return bool((await ask(srv, "web.shop.data.svc.cluster.local", CLIENT)).answer)

    await until(walks_data, "the pod's new namespace walked")
    assert (await ask(srv, f"db.data.{SHOP}", CLIENT)).rcode() == dns.rcode.NXDOMAIN


async def test_success_is_counted_per_server(server: Running) -> None:
    for name in (f"db.data.{SHOP}", f"web.{SHOP}", f"nope.{SHOP}", f"www.example.com.{SHOP}"):
        await ask(server, name, CLIENT)
    await ask(server, f"db.data.{SHOP}", NOBODY)  # (not walked: not counted)
    text = generate_latest(server.server.services.metrics.registry).decode()
    assert f'interkube_autopath_success_total{{server="dns://127.0.0.1:{server.port}"}} 3.0' in text

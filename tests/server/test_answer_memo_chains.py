"""The UDP answer memo through real servers: after the data behind an answer changes, the very
next answer is the new one, never the memo's old copy.

Each server runs in the test's loop on a free loopback port with the C helpers' drain, which
looks every datagram up in the listener's dispatcher's AnswerMemo before calling into Python
(interkube.server.dispatch). The queries are raw bytes, the same after the ID each time (the
memo's key), sent from a fresh socket with a new ID. A memo hit shows in ``memo.hits``; the
data is then changed the way a running server sees it change (a hosts file re-read, a watch
event, a snapshot relisted, a cache entry evicted or expired, a reload), and the next answer is
checked. Chains with a handler that must see every query (log, rewrite, acl, view, a weighted
loadbalance) never use the memo; prometheus counts the memo's answers as its own (the same
/metrics counts as without the memo), a round_robin loadbalance leaves only the answers it has
nothing to shuffle in it, errors and loop let it be; TCP answers neither come from it nor go
into it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from interkube.kube.cluster import Cluster
from interkube.kube.index import ClusterIndex, DepKey
from interkube.pkg import datagrams
from interkube.pkg.datagrams import AnswerMemo
from interkube.plugin.handler import Handler, Terminal
from interkube.plugins.cache.handler import CacheHandler
from interkube.server import listeners
from interkube.server.dispatch import Dispatcher
from testkit.fakekube import FakeKube, endpoint_slice, service, write_kubeconfig, write_snapshot
from testkit.fakeupstream import FakeUpstream
from testkit.servers import LOOPBACK, free_port, in_process, unbound
from testkit.waiting import until

pytestmark = pytest.mark.skipif(datagrams.udpfast is None or listeners._udpfast is None,
                                reason="interkube._udpfast is not built (or INTERKUBE_NO_UDPFAST): no answer memo")

#: Query IDs: each query has a new one (the memo's answer must carry it), the rest stays.
_IDS = (i & 0xFFFF for i in itertools.count(0x1000))


def query_wire(name: str, rdtype: str = "A", **make: Any) -> bytes:
    """A query's bytes, the same at every call but for the ID (dnspython adds no cookie);
    ``make``: make_query's options (use_edns, payload)."""
    q = dns.message.make_query(name, rdtype, **make)
    q.id = 0
    return q.to_wire()


def addresses(msg: dns.message.Message) -> list[str]:
    return sorted(rd.to_text() for rrset in msg.answer for rd in rrset
                  if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA))


def ttls(msg: dns.message.Message) -> set[int]:
    return {rrset.ttl for rrset in msg.answer}


@dataclass
class Served:
    """A server started in the test's loop, with one listener (one address and port)."""

    server: Any
    port: int
    #: UDP queries sent so far.
    sent: int = 0

    @property
    def dispatcher(self) -> Dispatcher:
        """The dispatcher the listener uses now (a reload replaces it)."""
        (listener,) = self.server.instance.listeners.values()
        dispatcher: Dispatcher = listener.dispatcher
        return dispatcher

    @property
    def memo(self) -> AnswerMemo:
        memo = self.dispatcher.memo
        assert memo is not None, "this server has no answer memo"
        return memo

    def handler(self, plugin: str) -> Any:
        """The first handler of ``plugin`` in the running configuration."""
        found: Handler = next(h for h in self.server.instance.built.handlers if h.plugin == plugin)
        return found

    async def udp(self, wire: bytes) -> tuple[dns.message.Message, bool]:
        """Send ``wire`` with a new ID over UDP: the response, and whether the memo sent it."""
        raw, hit = await self.udp_wire(wire)
        return dns.message.from_wire(raw), hit

    async def udp_wire(self, wire: bytes) -> tuple[bytes, bool]:
        """:meth:`udp`'s response as it came (dnspython renders a message's records in a new
        order each time)."""
        memo = self.dispatcher.memo
        before = 0 if memo is None else memo.hits
        sent = next(_IDS).to_bytes(2, "big") + wire[2:]
        self.sent += 1
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.connect((LOOPBACK, self.port))
            await loop.sock_sendall(sock, sent)
            raw = await asyncio.wait_for(loop.sock_recv(sock, 65535), 5.0)
        assert raw[:2] == sent[:2], "the answer must carry the query's own ID"
        hit = memo is not None and memo.hits > before
        return raw, hit

    async def tcp(self, wire: bytes) -> dns.message.Message:
        q = dns.message.from_wire(next(_IDS).to_bytes(2, "big") + wire[2:])
        return await dns.asyncquery.tcp(q, LOOPBACK, port=self.port, timeout=5.0)

    async def fresh(self, wire: bytes) -> dns.message.Message:
        """The answer to ``wire``, which the memo must not have sent (the chain made it)."""
        msg, hit = await self.udp(wire)
        assert not hit, f"the memo sent {msg}"
        return msg

    async def memo_hit(self, wire: bytes) -> dns.message.Message:
        """Ask ``wire`` until the memo sends the answer (the first answer puts it there, or,
        for a cache entry, the next one in the same rendered second): that answer."""
        async def hit() -> dns.message.Message | None:
            msg, was_hit = await self.udp(wire)
            return msg if was_hit else None
        found: dns.message.Message | None = await until(hit, "an answer sent from the answer memo")
        assert found is not None
        return found


Serve = Callable[[str], Awaitable[Served]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """``await serve(corefile)`` starts it with PORT replaced by a free port; stopped after."""
    async with contextlib.AsyncExitStack() as stack:
        async def start(corefile: str) -> Served:
            port = free_port()
            server = await stack.enter_async_context(in_process(corefile.replace("PORT", str(port))))
            return Served(server, port)

        yield start


# -- hosts ------------------------------------------------------------------------------------


async def test_a_reloaded_hosts_file_is_the_next_answer(serve: Serve, tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.1 www.example.org\n")
    # (reload 0: the test re-reads the file itself, at the moment it chooses)
    k = await serve(f"example.org:PORT {{\n bind 127.0.0.1\n hosts {hosts} {{\n  reload 0\n }}\n}}\n")
    handler = k.handler("hosts")
    assert handler in k.dispatcher.memo_heads
    wire = query_wire("www.example.org", "A")
    assert addresses(await k.memo_hit(wire)) == ["192.0.2.1"]

    hosts.write_text("192.0.2.22 www.example.org\n")
    await handler.check()
    assert addresses(await k.fresh(wire)) == ["192.0.2.22"]
    assert addresses(await k.memo_hit(wire)) == ["192.0.2.22"]  # and the memo has the new one

    # A name the file no longer has: hosts' answer for it (no fallthrough: SERVFAIL, as CoreDNS).
    hosts.write_text("192.0.2.3 other.example.org\n")
    await handler.check()
    assert (await k.fresh(wire)).rcode() == dns.rcode.SERVFAIL


def zone_file(path: Path, serial: int, address: str) -> None:
    path.write_text(f"$ORIGIN example.net.\n@ 3600 IN SOA ns.example.net. admin.example.net. {serial} 7200 3600 "
                    f"1209600 300\n@ 3600 IN NS ns.example.net.\nns 3600 IN A 192.0.2.53\n"
                    f"www 3600 IN A {address}\n")


async def test_a_reloaded_zone_file_is_the_next_answer(serve: Serve, tmp_path: Path) -> None:
    """file: a zone reloaded with a new serial is answered from the new data at once; an edit
    that keeps the serial is not taken (as CoreDNS), so the memo's answer is still the one to
    give; a name outside the zone gets file's REFUSED from the chain each time."""
    db = tmp_path / "db.example.net"
    zone_file(db, 1, "192.0.2.1")
    k = await serve(f".:PORT {{\n bind 127.0.0.1\n file {db} example.net {{\n  reload 0\n }}\n}}\n")
    handler = k.handler("file")
    assert handler in k.dispatcher.memo_heads
    wire = query_wire("www.example.net", "A")
    assert addresses(await k.memo_hit(wire)) == ["192.0.2.1"]

    zone_file(db, 1, "192.0.2.9")  # the same serial: not taken
    await handler.check()
    assert addresses(await k.memo_hit(wire)) == ["192.0.2.1"]
    zone_file(db, 2, "192.0.2.2")
    await handler.check()
    assert addresses(await k.fresh(wire)) == ["192.0.2.2"]
    assert addresses(await k.memo_hit(wire)) == ["192.0.2.2"]

    outside = query_wire("www.example.com", "A")
    for _ in range(3):
        msg, hit = await k.udp(outside)
        assert (msg.rcode(), hit) == (dns.rcode.REFUSED, False)


async def test_an_answer_the_table_let_go_is_not_sent_from_the_memo(serve: Serve) -> None:
    """Answers any client can make (here SERVFAIL for names the hosts file lacks) have a bound
    of their own in hosts' table; the memo does not keep sending one the table let go (a flood
    of random names must not hold more than the table does)."""
    k = await serve("example.org:PORT {\n bind 127.0.0.1\n hosts {\n  192.0.2.1 www.example.org\n }\n}\n")
    table = k.handler("hosts").generation.templates
    table.per_query_capacity = 2  # (10,000 queries otherwise)
    first = query_wire("random-0.example.org")
    assert (await k.memo_hit(first)).rcode() == dns.rcode.SERVFAIL
    for i in (1, 2):  # the second pushes random-0's answer out of the table
        assert (await k.udp(query_wire(f"random-{i}.example.org")))[0].rcode() == dns.rcode.SERVFAIL
    assert table.get(table_key(first)) is None
    assert (await k.fresh(first)).rcode() == dns.rcode.SERVFAIL


async def test_a_hosts_file_that_takes_a_name_kubernetes_answered(serve: Serve, tmp_path: Path) -> None:
    """hosts runs before kubernetes: a name it passes on (fallthrough) gets kubernetes' answer;
    once the file has the name, hosts answers it at once, whatever kubernetes answered before."""
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.1 other.app.svc.cluster.local\n")
    snapshot = write_snapshot(tmp_path / "west.yaml", [service("app", "web", cluster_ips=["10.96.0.10"])])
    k = await serve(f"cluster.local:PORT {{\n bind 127.0.0.1\n hosts {hosts} {{\n  reload 0\n  fallthrough\n }}\n"
                    f" kubernetes {{\n  snapshot {snapshot}\n  cluster west\n }}\n}}\n")
    assert k.handler("hosts") in k.dispatcher.memo_heads
    for name, rcode in (("web.app.svc.cluster.local", dns.rcode.NOERROR),
                        ("new.app.svc.cluster.local", dns.rcode.NXDOMAIN)):
        wire = query_wire(name, "A")
        for _ in range(3):
            msg, _hit = await k.udp(wire)
            assert msg.rcode() == rcode

    hosts.write_text("192.0.2.1 other.app.svc.cluster.local\n192.0.2.7 new.app.svc.cluster.local\n"
                     "192.0.2.8 web.app.svc.cluster.local\n")
    await k.handler("hosts").check()
    for name, address in (("web.app.svc.cluster.local", "192.0.2.8"), ("new.app.svc.cluster.local", "192.0.2.7")):
        msg = await k.fresh(query_wire(name, "A"))
        assert (msg.rcode(), addresses(msg)) == (dns.rcode.NOERROR, [address]), name


# -- kubernetes -------------------------------------------------------------------------------


def changes_seen(cluster: Cluster) -> list[set[DepKey] | None]:
    """What the cluster tells its subscribers from now on, in order. Subscribed after the
    handlers (at their start), this one hears of a change after they have dealt with it."""
    seen: list[set[DepKey] | None] = []

    def listener(index: ClusterIndex, keys: set[DepKey] | None) -> None:
        seen.append(keys)

    cluster.subscribe(listener)
    return seen


async def applied(seen: list[set[DepKey] | None], change: Callable[[], object], what: str) -> None:
    """Make ``change`` in the fake API and wait until the server has dealt with it."""
    before = len(seen)
    change()
    await until(lambda: len(seen) > before, f"the server applied {what}")


@pytest.fixture
async def fake_kube() -> AsyncIterator[FakeKube]:
    async with FakeKube(watch=True) as fake:
        fake.add_all([service("app", "web", cluster_ips=["10.96.0.10"]),
                      service("app", "api", cluster_ips=["10.96.0.11"])])
        yield fake


async def test_a_service_changed_or_deleted_is_the_next_answer(serve: Serve, fake_kube: FakeKube,
                                                                tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kc", {"east": fake_kube})
    k = await serve(f"cluster.local:PORT {{\n bind 127.0.0.1\n kubernetes {{\n  kubeconfig {kubeconfig} east\n"
                    "  startup_timeout 5s\n }\n}\n")
    handler = k.handler("kubernetes")
    assert handler in k.dispatcher.memo_heads
    seen = changes_seen(handler.cluster)
    web, api = query_wire("web.app.svc.cluster.local"), query_wire("api.app.svc.cluster.local")
    assert addresses(await k.memo_hit(web)) == ["10.96.0.10"]
    assert addresses(await k.memo_hit(api)) == ["10.96.0.11"]

    await applied(seen, lambda: fake_kube.add(service("app", "web", cluster_ips=["10.96.0.99"])), "a new ClusterIP")
    assert addresses(await k.fresh(web)) == ["10.96.0.99"]
    # What the event did not touch stays in the memo.
    msg, hit = await k.udp(api)
    assert hit and addresses(msg) == ["10.96.0.11"]
    assert addresses(await k.memo_hit(web)) == ["10.96.0.99"]

    await applied(seen, lambda: fake_kube.delete(service("app", "web")), "the deletion")
    assert (await k.fresh(web)).rcode() == dns.rcode.NXDOMAIN


async def test_a_name_that_appears_is_the_next_answer(serve: Serve, fake_kube: FakeKube, tmp_path: Path) -> None:
    """NXDOMAIN (a name, a namespace that does not exist) and a headless Service's addresses,
    sent from the memo, until the objects they were made from change."""
    fake_kube.add_all([service("app", "hl", headless=True),
                       endpoint_slice("app", "hl-1", "hl", [{"ip": "10.244.1.1", "hostname": "a"}])])
    kubeconfig = write_kubeconfig(tmp_path / "kc", {"east": fake_kube})
    k = await serve(f"cluster.local:PORT {{\n bind 127.0.0.1\n kubernetes {{\n  kubeconfig {kubeconfig} east\n"
                    "  startup_timeout 5s\n }\n}\n")
    seen = changes_seen(k.handler("kubernetes").cluster)
    new, elsewhere = query_wire("new.app.svc.cluster.local"), query_wire("db.team.svc.cluster.local")
    hl = query_wire("hl.app.svc.cluster.local")
    assert (await k.memo_hit(new)).rcode() == dns.rcode.NXDOMAIN
    assert (await k.memo_hit(elsewhere)).rcode() == dns.rcode.NXDOMAIN
    assert addresses(await k.memo_hit(hl)) == ["10.244.1.1"]

    await applied(seen, lambda: fake_kube.add(service("app", "new", cluster_ips=["10.96.0.50"])), "a new Service")
    assert addresses(await k.fresh(new)) == ["10.96.0.50"]
    await applied(seen, lambda: fake_kube.add(service("team", "db", cluster_ips=["10.96.0.51"])),
                  "a Service in a new namespace")
    assert addresses(await k.fresh(elsewhere)) == ["10.96.0.51"]
    await applied(seen, lambda: fake_kube.add(endpoint_slice("app", "hl-1", "hl", [
        {"ip": "10.244.1.1", "hostname": "a"}, {"ip": "10.244.1.2", "hostname": "b"}])), "a new endpoint")
    assert addresses(await k.fresh(hl)) == ["10.244.1.1", "10.244.1.2"]


async def test_a_relisted_snapshot_is_the_next_answer(serve: Serve, tmp_path: Path) -> None:
    path = write_snapshot(tmp_path / "west.yaml", [service("app", "web", cluster_ips=["10.96.0.10"]),
                                                   service("app", "api", cluster_ips=["10.96.0.11"])])
    k = await serve(f"cluster.local:PORT {{\n bind 127.0.0.1\n kubernetes {{\n  snapshot {path}\n"
                    "  cluster west\n }\n}\n")
    handler = k.handler("kubernetes")
    cluster: Cluster = handler.cluster
    web, api, new = (query_wire(f"{n}.app.svc.cluster.local") for n in ("web", "api", "new"))
    assert addresses(await k.memo_hit(web)) == ["10.96.0.10"]
    assert addresses(await k.memo_hit(api)) == ["10.96.0.11"]
    assert (await k.memo_hit(new)).rcode() == dns.rcode.NXDOMAIN

    before = cluster.index
    write_snapshot(path, [service("app", "web", cluster_ips=["10.96.0.77"]),
                          service("app", "api", cluster_ips=["10.96.0.11"]),
                          service("app", "new", cluster_ips=["10.96.0.12"])])
    await cluster.source.check(cluster)  # type: ignore[attr-defined]  # (the snapshot source's own check)
    assert cluster.index is not before, "the snapshot was not taken"
    assert addresses(await k.fresh(web)) == ["10.96.0.77"]
    assert addresses(await k.fresh(api)) == ["10.96.0.11"]  # the same answer, from the new index
    assert addresses(await k.fresh(new)) == ["10.96.0.12"]


# -- cache ------------------------------------------------------------------------------------


async def test_cache_hits_from_the_memo_count_down_their_ttl(serve: Serve) -> None:
    up = free_port()
    with unbound(up, ["a.example. 300 IN A 192.0.2.1"]):
        k = await serve(f"example.:PORT {{\n bind 127.0.0.1\n cache\n forward . 127.0.0.1:{up}\n}}\n")
        cache = k.handler("cache")
        assert cache in k.dispatcher.memo_heads
        wire = query_wire("a.example", "A")
        first = min(ttls(await k.memo_hit(wire)))
        # UDP (the memo's answers within a second, the chain's at its end) and TCP (the chain's
        # always) in turn: one TTL that only goes down, as the seconds pass.
        shown: list[tuple[str, int]] = []
        memo_hits = 0

        async def counted_down() -> bool:
            nonlocal memo_hits
            msg, hit = await k.udp(wire)
            memo_hits += hit
            shown.append(("udp memo" if hit else "udp", min(ttls(msg))))
            shown.append(("tcp", min(ttls(await k.tcp(wire)))))
            values = [ttl for _, ttl in shown]
            assert values == sorted(values, reverse=True), f"a TTL went up: {shown}"
            return values[-1] <= first - 2

        done: bool = await until(counted_down, lambda: f"the TTL counted down two seconds from {first}: {shown}")
        assert done and memo_hits > 0, shown


@pytest.fixture
def upstream(two_upstreams: tuple[FakeUpstream, FakeUpstream]) -> FakeUpstream:
    """An upstream whose data the test changes: a.example. 192.0.2.1 and b.example. 192.0.2.2
    (30 s TTLs, unless the cache caps them)."""
    up = two_upstreams[0]
    up.behaviour.records[("b.example.", "A")] = ["192.0.2.2"]
    return up


async def test_cache_hits_from_the_memo_are_counted_as_hits(serve: Serve) -> None:
    # keepttl: an entry's answer is the same bytes for its whole life, so every hit after the
    # first (which puts it) comes from the memo, whatever the clock shows.
    k = await serve("example.org:PORT {\n bind 127.0.0.1\n cache {\n  keepttl\n }\n"
                    " hosts {\n  192.0.2.1 www.example.org\n }\n}\n")
    cache = k.handler("cache")
    assert cache in k.dispatcher.memo_heads
    wire = query_wire("www.example.org", "A")
    miss, hit = await k.udp(wire)  # stored
    assert not hit and addresses(miss) == ["192.0.2.1"]
    hits, memo_hits = sum(cache.stats.hits), k.memo.hits
    answers = [await k.udp(wire) for _ in range(6)]
    assert all(addresses(msg) == ["192.0.2.1"] for msg, _ in answers)
    assert [was_hit for _, was_hit in answers] == [False] + [True] * 5
    assert k.memo.hits - memo_hits == 5
    assert sum(cache.stats.hits) - hits == 6  # the memo's five included


async def test_an_evicted_cache_entry_is_not_sent_after_it_left(serve: Serve, upstream: FakeUpstream) -> None:
    # One success entry, kept with its TTL (so its stamp holds for its whole life).
    k = await serve(f"example.:PORT {{\n bind 127.0.0.1\n cache {{\n  success 1\n  keepttl\n }}\n"
                    f" forward . {upstream.address}\n}}\n")
    cache = k.handler("cache")
    a, b = query_wire("a.example", "A"), query_wire("b.example", "A")
    assert addresses(await k.memo_hit(a)) == ["192.0.2.1"]
    upstream.behaviour.records[("a.example.", "A")] = ["192.0.2.9"]
    assert addresses(await k.fresh(b)) == ["192.0.2.2"]  # which takes a.example's place
    assert list(cache.entries) == [table_key(b)]  # (stored before b.example.'s answer was sent)
    assert addresses(await k.fresh(a)) == ["192.0.2.9"]


def table_key(wire: bytes) -> bytes:
    """The key a handler's table (and the cache) keeps the answer to a query under."""
    from interkube.dns.wire import parse_query

    q = parse_query(wire)
    assert q is not None
    key: bytes = q.key
    return key


async def test_an_expired_cache_entry_is_not_sent_after_it_expired(serve: Serve, upstream: FakeUpstream) -> None:
    # Entries live 2 seconds (capped, and no minimum).
    k = await serve(f"example.:PORT {{\n bind 127.0.0.1\n cache {{\n  success 100 2 0\n }}\n"
                    f" forward . {upstream.address}\n}}\n")
    cache = k.handler("cache")
    a = query_wire("a.example", "A")
    assert addresses(await k.memo_hit(a)) == ["192.0.2.1"]
    upstream.behaviour.records[("a.example.", "A")] = ["192.0.2.9"]
    (entry,) = cache.entries.values()
    await until(lambda: time.monotonic() >= entry.expires, "the cached answer expired")
    assert addresses(await k.fresh(a)) == ["192.0.2.9"]


# -- chains the memo must not serve -----------------------------------------------------------


HOSTS = " hosts {\n  192.0.2.1 www.example.org\n  192.0.2.2 www.example.org\n  192.0.2.3 alias.example.org\n }\n"


@pytest.mark.parametrize("plugin", [
    "log",
    "rewrite name alias.example.org www.example.org",
    "acl {\n  allow net 127.0.0.0/8\n }",
    "view local {\n  expr incidr(client_ip(), '127.0.0.0/8')\n }",
    # (its weight file may change with nothing to revoke the answers' stamps)
    "loadbalance weighted WEIGHTS",
])
async def test_a_chain_with_a_handler_that_sees_every_query_is_not_memoed(serve: Serve, plugin: str,
                                                                         tmp_path: Path) -> None:
    weights = tmp_path / "weights"
    weights.write_text("www.example.org\n192.0.2.1 3\n192.0.2.2 1\n")
    k = await serve(f"example.org:PORT {{\n bind 127.0.0.1\n {plugin.replace('WEIGHTS', str(weights))}\n{HOSTS}}}\n")
    dispatcher = k.dispatcher
    assert dispatcher.memo is None and not dispatcher.memo_heads
    for _ in range(3):
        msg, hit = await k.udp(query_wire("www.example.org", "A"))
        assert not hit and addresses(msg) == ["192.0.2.1", "192.0.2.2"]


def requests_counted(k: Served) -> float:
    text = generate_latest(k.server.services.metrics.registry).decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("interkube_dns_requests_total{") and 'zone="b.example.org."' in line)


async def test_only_the_blocks_whose_every_handler_may_be_memoed_are(
        serve: Serve, interkube_caplog: pytest.LogCaptureFixture) -> None:
    """Two zones on one listener: the memo serves the plain block's answers, and every query of
    the block with log and prometheus still gets its log line and its count."""
    k = await serve("a.example.org:PORT {\n bind 127.0.0.1\n hosts {\n  192.0.2.1 a.example.org\n }\n}\n"
                    f"b.example.org:PORT {{\n bind 127.0.0.1\n log\n prometheus 127.0.0.1:{free_port()}\n"
                    " hosts {\n  192.0.2.2 b.example.org\n }\n}\n")
    assert len(k.dispatcher.memo_heads) == 1
    assert addresses(await k.memo_hit(query_wire("a.example.org"))) == ["192.0.2.1"]
    b = query_wire("b.example.org")
    counted = requests_counted(k)
    interkube_caplog.clear()
    for _ in range(4):
        msg, hit = await k.udp(b)
        assert not hit and addresses(msg) == ["192.0.2.2"]
    lines = [r for r in interkube_caplog.records if r.name == "interkube.query" and "b.example.org" in r.getMessage()]
    assert len(lines) == 4, [r.getMessage() for r in lines]
    assert requests_counted(k) - counted == 4


# -- chains the memo serves although a handler sees every answer --------------------------------


#: A zone's /metrics samples, by (name, labels).
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scraped(metrics_port: int, zone: str) -> Samples:
    """The zone's interkube_dns_* samples as Prometheus scrapes them, but for the durations'
    buckets and sum (time: the memo sends an answer in microseconds, the chain in more)."""
    async with aiohttp.ClientSession() as session, \
            session.get(f"http://{LOOPBACK}:{metrics_port}/metrics") as response:
        text = await response.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (sample.name.startswith("interkube_dns_") and sample.labels.get("zone") == zone
                    and not sample.name.endswith("_created")
                    and (not sample.name.startswith("interkube_dns_request_duration_seconds")
                         or sample.name.endswith("_count"))):
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def grown(after: Samples, before: Samples) -> Samples:
    """By how much each sample grew between two scrapes (those that did)."""
    return {key: value - before.get(key, 0.0) for key, value in after.items() if value != before.get(key, 0.0)}


def requests(samples: Samples) -> float:
    return sum(value for (name, _), value in samples.items() if name == "interkube_dns_requests_total")


async def test_prometheus_counts_the_memos_answers_as_its_own(serve: Serve) -> None:
    """Queries of the same bytes, nearly all of them sent by the memo: every count /metrics shows
    (requests by type, responses by rcode and plugin, the request and response sizes' buckets,
    sums and counts, the durations' count) grows by as many times what the first answer (the
    chain's own) made it grow, to the unit."""
    metrics = free_port()
    k = await serve(f"example.org:PORT {{\n bind 127.0.0.1\n prometheus 127.0.0.1:{metrics}\n{HOSTS}}}\n")
    assert k.handler("prometheus") in k.dispatcher.memo_heads
    asked = 20
    for wire in (query_wire("www.example.org"), query_wire("alias.example.org", use_edns=0, payload=1232),
                 query_wire("www.example.org", "AAAA"), query_wire("nowhere.example.org", "TXT")):
        before = await scraped(metrics, "example.org.")
        first, _ = await k.udp_wire(wire)
        once = grown(await scraped(metrics, "example.org."), before)
        assert requests(once) == 1, once
        hits = k.memo.hits
        for _ in range(asked - 1):
            assert (await k.udp_wire(wire))[0][2:] == first[2:]
        assert k.memo.hits - hits >= asked - 2, "the memo sent few of the answers"  # (the second may put it)
        assert grown(await scraped(metrics, "example.org."), before) == {key: asked * v for key, v in once.items()}


#: More addresses than 512 bytes hold.
BIG = "".join(f"  192.0.2.{i} big.example.org\n" for i in range(1, 41))


async def test_an_answer_above_512_bytes_on_a_prometheus_chain_is_never_memoed(serve: Serve) -> None:
    """prometheus counts the answer the chain gave, and the listener may cut it to the client's
    size after: such an answer never goes into the memo (which would count the cut one), and
    each is counted as it is sent."""
    metrics = free_port()
    k = await serve(f"example.org:PORT {{\n bind 127.0.0.1\n prometheus 127.0.0.1:{metrics}\n"
                    f" hosts {{\n{BIG}  192.0.2.200 www.example.org\n }}\n}}\n")
    for wire, cut in ((query_wire("big.example.org", use_edns=0, payload=4096), False),
                      (query_wire("big.example.org"), True)):
        before = await scraped(metrics, "example.org.")
        for _ in range(5):
            msg = await k.fresh(wire)
            assert bool(msg.flags & dns.flags.TC) == cut and (cut or len(msg.answer[0]) == 40)
        assert (len(k.memo), k.memo.hits) == (0, 0)
        assert requests(grown(await scraped(metrics, "example.org."), before)) == 5
    # (while a small answer on the same chain is)
    assert addresses(await k.memo_hit(query_wire("www.example.org"))) == ["192.0.2.200"]


async def test_round_robin_shuffled_answers_never_come_from_the_memo(serve: Serve) -> None:
    """A name with three addresses gets them in a new order each time (not the first answer's,
    again and again, from the memo); a name with one address has nothing to shuffle: its answer
    comes from the memo."""
    k = await serve("example.org:PORT {\n bind 127.0.0.1\n loadbalance\n hosts {\n"
                    "  192.0.2.1 www.example.org\n  192.0.2.2 www.example.org\n  192.0.2.3 www.example.org\n"
                    "  192.0.2.9 one.example.org\n }\n}\n")
    assert k.handler("loadbalance") in k.dispatcher.memo_heads
    wire = query_wire("www.example.org")
    answers = set()
    for _ in range(16):  # one of 6 orders each time: all the same with a chance of 6**-15 (< 1e-11)
        raw, hit = await k.udp_wire(wire)
        assert not hit and addresses(dns.message.from_wire(raw)) == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
        answers.add(raw[2:])
    assert len(answers) > 1, answers
    assert len(k.memo) == 0
    assert addresses(await k.memo_hit(query_wire("one.example.org"))) == ["192.0.2.9"]


async def test_errors_and_loop_let_the_memo_serve_and_the_loop_check_runs(serve: Serve, upstream: FakeUpstream) -> None:
    """errors acts on the slow path's errors only; loop's probe (a random name under the zone)
    goes to the slow path until the check is done, and is answered once through the forward."""
    k = await serve(f"example.:PORT {{\n bind 127.0.0.1\n errors\n loop\n hosts {{\n  192.0.2.7 h.example\n"
                    f"  fallthrough\n }}\n forward . {upstream.address}\n}}\n")
    assert k.handler("errors") in k.dispatcher.memo_heads
    loop = k.handler("loop")
    await until(lambda: loop.done, "the loop check is done")
    assert loop.seen == 1 and k.server.fatal_message is None
    assert addresses(await k.memo_hit(query_wire("h.example"))) == ["192.0.2.7"]
    assert addresses(await k.fresh(query_wire("a.example"))) == ["192.0.2.1"]  # (forwarded: no stamp)


def chain_of(k: Served) -> list[Handler]:
    """The handlers of the one memo'd chain of ``k``, in order."""
    (head,) = k.dispatcher.memo_heads
    handlers: list[Handler] = []
    handler: Handler | None = head
    while handler is not None and not isinstance(handler, Terminal):
        handlers.append(handler)
        handler = handler.next
    return handlers


def kubeadm_corefile(kubeconfig: Path, upstream: FakeUpstream, metrics: int, cache: str) -> str:
    """kubeadm's Corefile, on loopback, with the fake API's cluster, ``upstream`` and ``cache``'s
    directive and block."""
    return (f".:PORT {{\n bind 127.0.0.1\n errors\n health 127.0.0.1:{free_port()} {{\n  lameduck 5s\n }}\n"
            f" ready 127.0.0.1:{free_port()}\n kubernetes cluster.local in-addr.arpa ip6.arpa {{\n"
            f"  kubeconfig {kubeconfig} east\n  startup_timeout 5s\n  pods insecure\n"
            "  fallthrough in-addr.arpa ip6.arpa\n  ttl 30\n }\n"
            f" prometheus 127.0.0.1:{metrics}\n forward . {upstream.address} {{\n  max_concurrent 1000\n }}\n"
            f" {cache}\n loop\n reload\n loadbalance\n}}\n")


async def test_a_kubeadm_corefile_uses_the_memo_and_answers_the_changes(serve: Serve, fake_kube: FakeKube,
                                                                      upstream: FakeUpstream, tmp_path: Path) -> None:
    """kubeadm's Corefile (before kubeadm 1.28 left the cluster's names out of the cache; here
    with a cache of 2 s, not 30, so that a change shows soon): the Services' one-address
    answers and the forwarded ones come from the memo through the cache; what the cache still
    holds after a Service changed is what CoreDNS sends too, and once it expired the new answer
    is the next one; a headless Service's two addresses are shuffled, never sent from the memo;
    and prometheus counts every query the test sends."""
    fake_kube.add_all([service("app", "hl", headless=True),
                       endpoint_slice("app", "hl-1", "hl", [{"ip": "10.244.1.1", "hostname": "a"},
                                                             {"ip": "10.244.1.2", "hostname": "b"}])])
    metrics = free_port()
    k = await serve(kubeadm_corefile(write_kubeconfig(tmp_path / "kc", {"east": fake_kube}), upstream, metrics,
                                     "cache 2"))
    assert len(k.dispatcher.memo_heads) == 1
    loop, cache = k.handler("loop"), k.handler("cache")
    await until(lambda: loop.done, "the loop check is done")
    assert k.server.fatal_message is None
    seen = changes_seen(k.handler("kubernetes").cluster)
    before, sent = await scraped(metrics, "."), k.sent
    web, hl = query_wire("web.app.svc.cluster.local"), query_wire("hl.app.svc.cluster.local")
    assert addresses(await k.memo_hit(web)) == ["10.96.0.10"]
    assert addresses(await k.memo_hit(query_wire("a.example"))) == ["192.0.2.1"]
    for _ in range(3):
        assert addresses(await k.fresh(hl)) == ["10.244.1.1", "10.244.1.2"]

    async def after_the_cache_let_go(change: Callable[[], object], what: str) -> dns.message.Message:
        """The next answer to web once ``change`` was applied and the cache's entry expired."""
        entry = cache.entries.get(table_key(web))
        await applied(seen, change, what)
        if entry is not None:
            await until(lambda: time.monotonic() >= entry.expires, "the cached answer expired")
        return await k.fresh(web)

    changed = await after_the_cache_let_go(lambda: fake_kube.add(service("app", "web", cluster_ips=["10.96.0.99"])),
                                           "a new ClusterIP")
    assert addresses(changed) == ["10.96.0.99"]
    assert addresses(await k.memo_hit(web)) == ["10.96.0.99"]
    deleted = await after_the_cache_let_go(lambda: fake_kube.delete(service("app", "web")), "the deletion")
    assert deleted.rcode() == dns.rcode.NXDOMAIN
    assert requests(grown(await scraped(metrics, "."), before)) == k.sent - sent


async def test_kubeadms_corefile_as_shipped_sends_the_clusters_answers_from_the_memo(
        serve: Serve, fake_kube: FakeKube, upstream: FakeUpstream, tmp_path: Path) -> None:
    """kubeadm 1.28 and later leave the cluster's names out of the cache: their answers are
    kubernetes' own, which the memo may send (the cache's counts staying what they would be)."""
    k = await serve(kubeadm_corefile(write_kubeconfig(tmp_path / "kc", {"east": fake_kube}), upstream, free_port(),
                                     "cache 30 {\n  disable success cluster.local\n  disable denial cluster.local\n }"))
    cache = next(h for h in chain_of(k) if isinstance(h, CacheHandler))
    loop = k.handler("loop")
    await until(lambda: loop.done, "the loop check is done")  # (its probe is a miss of the cache too)
    misses, hits = cache.stats.all_misses, sum(cache.stats.hits)
    web = query_wire("web.app.svc.cluster.local")
    answers = [await k.udp(web) for _ in range(3)]
    assert [addresses(msg) for msg, _ in answers] == [["10.96.0.10"]] * 3
    assert any(hit for _, hit in answers), "no answer came from the memo"
    # Every one a miss of the cache, as CoreDNS counts those, the memo's too.
    assert (cache.stats.all_misses - misses, sum(cache.stats.hits) - hits) == (3, 0)


# -- reload and TCP ---------------------------------------------------------------------------


async def test_a_reload_starts_with_an_empty_memo(serve: Serve) -> None:
    k = await serve("example.org:PORT {\n bind 127.0.0.1\n hosts {\n  192.0.2.1 www.example.org\n }\n}\n")
    wire = query_wire("www.example.org")
    assert addresses(await k.memo_hit(wire)) == ["192.0.2.1"]
    old = k.dispatcher
    path = Path(k.server.source.path)
    path.write_text(path.read_text().replace("192.0.2.1", "192.0.2.5"))
    assert await k.server.reload()
    assert k.dispatcher is not old
    assert len(k.memo) == 0 and k.memo.hits == 0
    assert addresses(await k.fresh(wire)) == ["192.0.2.5"]
    assert addresses(await k.memo_hit(wire)) == ["192.0.2.5"]


async def test_tcp_answers_never_come_from_or_go_into_the_memo(serve: Serve) -> None:
    # Enough addresses for an answer above 512 bytes: a UDP client without EDNS gets it cut.
    many = "".join(f"  192.0.2.{i} big.example.org\n" for i in range(1, 41))
    k = await serve(f"example.org:PORT {{\n bind 127.0.0.1\n hosts {{\n{many}  192.0.2.200 www.example.org\n }}\n}}\n")
    big, small = query_wire("big.example.org"), query_wire("www.example.org")
    for _ in range(3):
        assert len((await k.tcp(big)).answer[0]) == 40
        assert addresses(await k.tcp(small)) == ["192.0.2.200"]
    assert (len(k.memo), k.memo.hits) == (0, 0)
    cut = await k.memo_hit(big)  # UDP: the answer cut as UDP needs, memo'd so
    assert cut.flags & dns.flags.TC and sum(len(rrset) for rrset in cut.answer) < 40
    # A UDP answer in the memo is not what TCP gets either.
    assert len((await k.tcp(big)).answer[0]) == 40
    assert addresses(await k.memo_hit(small)) == ["192.0.2.200"]
    hits = k.memo.hits
    assert addresses(await k.tcp(small)) == ["192.0.2.200"]
    assert k.memo.hits == hits

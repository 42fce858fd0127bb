"""splitdns from a snapshot: a server's public name answered with its ready pod's addresses under
the client's name (its letter case kept, no CNAME, the plugin's TTL) over UDP and TCP; names
that stand for nothing local (no pod, a pod not ready, no rule) answered by the public DNS
behind `forward`; other types NODATA with the zone's SOA or passed on; a templated name that
is no name NXDOMAIN; answers following the cluster's changes and kept until then."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from interkube.kube import snapshot
from testkit.dig import dig, needs_dig, status
from testkit.fakekube import write_snapshot
from testkit.fakeupstream import FakeUpstream
from testkit.waiting import until

from splitdns_data import POD_IPS, objects

Running = Any  # tests/plugins/conftest.py's Running
Serve = Callable[[str], Awaitable[Running]]

RULE = r"pod ^db-([0-9]+)\.db\.example\.com\.$ db-{1}.db-headless.shop.svc.cluster.local."
LONG = r"pod ^([a-z0-9.]+)\.long\.db\.example\.com\.$ {1}.{1}.db-headless.shop.svc.cluster.local."


def corefile(cluster: Path, public: FakeUpstream, *options: str) -> str:
    body = "".join(f"        {o}\n" for o in options)
    return f""".:PORT {{
    bind 127.0.0.1
    kubernetes cluster.local {{
        snapshot {cluster}
    }}
    splitdns db.example.com {{
        {RULE}
        {LONG}
        host db-9.db.example.com 192.0.2.99 2001:db8::99
{body}    }}
    forward . {public.address}
}}
"""


def records(msg: dns.message.Message, section: str = "answer") -> list[str]:
    return sorted(f"{r.name} {r.ttl} {dns.rdatatype.to_text(r.rdtype)} {rd}" for r in getattr(msg, section) for rd in r)


@pytest.fixture
async def k(serve: Serve, cluster: Path, public: FakeUpstream) -> Running:
    return await serve(corefile(cluster, public, "ttl 7"))


async def test_a_ready_pods_name_is_answered_with_its_addresses_from_the_cluster(k: Running) -> None:
    msg = await k.query("DB-0.Db.Example.com", "A")
    assert msg.rcode() == dns.rcode.NOERROR and msg.flags & dns.flags.AA
    assert records(msg) == [f"DB-0.Db.Example.com. 7 A {POD_IPS['db-0']}"]  # the client's letters, no CNAME
    msg = await k.query("db-0.db.example.com", "AAAA")
    assert records(msg) == ["db-0.db.example.com. 7 AAAA fd00::10"]
    # A pod without an address of the family asked: NODATA with the zone's SOA, not the public one.
    msg = await k.query("db-1.db.example.com", "AAAA")
    assert msg.rcode() == dns.rcode.NOERROR and not msg.answer
    assert [(r.name.to_text(), r.rdtype) for r in msg.authority] == [("db.example.com.", dns.rdatatype.SOA)]
    assert records(await k.query("db-1.db.example.com", "A")) == [f"db-1.db.example.com. 7 A {POD_IPS['db-1']}"]


async def test_names_that_stand_for_nothing_local_get_the_public_answer(k: Running, public: FakeUpstream) -> None:
    # db-2 exists but is not ready; db-5 has no pod; www has no rule; db-x matches no pattern.
    assert records(await k.query("db-2.db.example.com")) == ["db-2.db.example.com. 30 A 203.0.113.2"]
    assert records(await k.query("db-5.db.example.com")) == ["db-5.db.example.com. 30 A 203.0.113.5"]
    assert records(await k.query("www.db.example.com")) == ["www.db.example.com. 30 A 203.0.113.80"]
    assert (await k.query("db-x.db.example.com")).rcode() == dns.rcode.NXDOMAIN  # the public DNS says so
    assert k.handler("splitdns").built == 4 and len(public.queries) == 4


async def test_fixed_host_answers(k: Running) -> None:
    assert records(await k.query("db-9.db.example.com")) == ["db-9.db.example.com. 7 A 192.0.2.99"]
    assert records(await k.query("db-9.db.example.com", "AAAA")) == ["db-9.db.example.com. 7 AAAA 2001:db8::99"]


async def test_other_types_are_nodata_with_the_zones_soa(k: Running) -> None:
    for rdtype in ("TXT", "MX", "SRV", "CNAME"):
        msg = await k.query("db-0.db.example.com", rdtype)
        assert msg.rcode() == dns.rcode.NOERROR and not msg.answer, rdtype
        [soa] = msg.authority
        assert (soa.name.to_text(), soa.rdtype, soa[0].mname.to_text()) == (
            "db.example.com.", dns.rdatatype.SOA, "ns.dns.db.example.com.")
    # At a name splitdns does not take, the public DNS answers them.
    assert records(await k.query("db-2.db.example.com", "TXT")) == ['db-2.db.example.com. 30 TXT "public"']


async def test_other_types_can_pass_on(serve: Serve, cluster: Path, public: FakeUpstream) -> None:
    k = await serve(corefile(cluster, public, "other_types next"))
    assert records(await k.query("db-0.db.example.com", "TXT")) == ['db-0.db.example.com. 30 TXT "public"']
    assert records(await k.query("db-0.db.example.com", "A")) == [f"db-0.db.example.com. 5 A {POD_IPS['db-0']}"]
    msg = await k.query("db-1.db.example.com", "AAAA")  # an address type stays splitdns's
    assert msg.rcode() == dns.rcode.NOERROR and not msg.answer and msg.authority


async def test_tcp_answers_as_udp(k: Running) -> None:
    for name, rdtype in (("db-0.DB.example.com", "A"), ("db-0.db.example.com", "TXT"), ("db-2.db.example.com", "A")):
        udp = await k.query(name, rdtype)
        tcp = await k.query(name, rdtype, tcp=True)
        assert (tcp.rcode(), tcp.flags, records(tcp), records(tcp, "authority")) == (
            udp.rcode(), udp.flags, records(udp), records(udp, "authority")), name


async def test_a_templated_name_too_long_is_nxdomain(serve: Serve, cluster: Path, public: FakeUpstream) -> None:
    # 150 bytes of labels, twice in the template: over 255 bytes, no name.
    long_name = ".".join(["a" * 49] * 3) + ".long.db.example.com"
    k = await serve(corefile(cluster, public))
    msg = await k.query(long_name)
    assert msg.rcode() == dns.rcode.NXDOMAIN and [r.rdtype for r in msg.authority] == [dns.rdatatype.SOA]
    assert not public.queries
    # A short one is a name: nothing local has it, so the public DNS answers (NXDOMAIN there too).
    assert (await k.query("x.long.db.example.com")).rcode() == dns.rcode.NXDOMAIN and len(public.queries) == 1
    # With fallthrough, the long name goes on as well.
    k = await serve(corefile(cluster, public, "fallthrough"))
    assert (await k.query(long_name)).rcode() == dns.rcode.NXDOMAIN and len(public.queries) == 2


async def test_answers_follow_the_cluster_and_are_kept_until_it_changes(
        serve: Serve, cluster: Path, public: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot, "CHECK_INTERVAL", 0.05)
    k = await serve(corefile(cluster, public))
    handler = k.handler("splitdns")
    assert records(await k.query("db-2.db.example.com")) == ["db-2.db.example.com. 30 A 203.0.113.2"]
    assert records(await k.query("db-0.db.example.com")) == [f"db-0.db.example.com. 5 A {POD_IPS['db-0']}"]
    built = handler.built
    for _ in range(3):  # from the templates: nothing built again
        await k.query("db-0.db.example.com")
        await k.query("db-2.db.example.com")
    assert handler.built == built
    write_snapshot(cluster, objects(db2_ready=True))

    async def db2_answered() -> bool:
        return records(await k.query("db-2.db.example.com")) == [f"db-2.db.example.com. 5 A {POD_IPS['db-2']}"]

    await until(db2_answered, "db-2 answered with its pod address once ready")
    # The change dropped the answers that read the endpoints, and no other.
    await k.query("db-0.db.example.com")
    assert handler.built == built + 2
    # The pods gone: the public DNS answers again.
    write_snapshot(cluster, [objects()[0], *objects()[3:]])  # the endpoints gone

    async def public_again() -> bool:
        return records(await k.query("db-0.db.example.com")) == ["db-0.db.example.com. 30 A 203.0.113.0"]

    await until(public_again, "db-0 answered by the public DNS once its pod is gone")


@needs_dig
async def test_over_dig(k: Running) -> None:
    out = await asyncio.to_thread(dig, k.port, "+norec", "Db-1.db.EXAMPLE.com", "A")
    lines = [line.split() for line in out.splitlines()]
    assert status(out) == "NOERROR" and ["Db-1.db.EXAMPLE.com.", "7", "IN", "A", POD_IPS["db-1"]] in lines
    out = await asyncio.to_thread(dig, k.port, "+tcp", "db-1.db.example.com", "TXT")
    assert status(out) == "NOERROR" and "ANSWER: 0" in out and "db.example.com.\t" in out
    out = await asyncio.to_thread(dig, k.port, "db-2.db.example.com", "A")
    assert "203.0.113.2" in out

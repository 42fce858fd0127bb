"""Every example of the template plugin's README, started as written (on a free port, with the
upstream on loopback being a fake one) and asked what the README says it answers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest

from testkit.fakeupstream import FakeUpstream

Serve = Callable[[str], Awaitable[Any]]
README = Path(__file__).resolve().parents[3] / "src" / "interkube" / "plugins" / "template" / "README.md"
FENCE = re.compile(r"^~~~ corefile\n(.*?)^~~~", re.M | re.S)
#: What the fake upstream knows; a name it answers shows that the question was forwarded.
UPSTREAM = {("www.example.", "A"): ["192.0.2.200"], ("www.example.com.", "A"): ["192.0.2.201"],
            ("google.com.", "A"): ["192.0.2.202"]}


def examples() -> list[str]:
    return FENCE.findall(README.read_text())


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    up = await FakeUpstream().start()
    up.behaviour.records = dict(UPSTREAM)
    yield up
    await up.stop()


class Example:
    """One README example running, and the questions to ask it."""

    def __init__(self, srv: Any) -> None:
        self.port: int = srv.port

    async def ask(self, name: str, rdtype: str, rdclass: str = "IN", edns: bool = False) -> dns.message.Message:
        q = dns.message.make_query(name, rdtype, rdclass=rdclass, use_edns=0 if edns else None)
        return await dns.asyncquery.udp(q, "127.0.0.1", port=self.port, timeout=3)

    async def answer(self, name: str, rdtype: str, rdclass: str = "IN") -> list[str]:
        r = await self.ask(name, rdtype, rdclass)
        assert r.rcode() == dns.rcode.NOERROR, (name, rdtype, dns.rcode.to_text(r.rcode()))
        return lines(r.answer)


def lines(rrsets: list[Any]) -> list[str]:
    return [f"{rrset.name} {rrset.ttl} {dns.rdataclass.to_text(rrset.rdclass)} {dns.rdatatype.to_text(rrset.rdtype)} "
            f"{rd}" for rrset in rrsets for rd in rrset]


FORWARDED = ["www.example. 30 IN A 192.0.2.200"]


async def everything_nxdomain(ex: Example) -> None:
    for name, rdtype in (("anything.test", "A"), ("x", "TXT"), ("www.example.com", "AAAA")):
        r = await ex.ask(name, rdtype)
        assert (r.rcode(), r.answer, r.authority) == (dns.rcode.NXDOMAIN, [], [])


async def invalid_tld(ex: Example) -> None:
    for rdclass in ("IN", "CH"):
        r = await ex.ask("foo.invalid", "A", rdclass, edns=True)
        assert r.rcode() == dns.rcode.NXDOMAIN
        assert lines(r.authority) == [f"invalid. 60 {rdclass} SOA ns.invalid. hostmaster.invalid. 1 60 60 60 60"]
        assert [(int(o.code), o.text) for o in r.options if isinstance(o, dns.edns.EDEOption)] == [
            (21, "Blocked according to RFC2606")]
    assert await ex.answer("www.example", "A") == FORWARDED


async def search_path_by_zone(ex: Example) -> None:
    r = await ex.ask("www.example.com.dc1.example.com", "A")
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert lines(r.authority) == ["example.com.dc1.example.com. 60 IN SOA ns.example.com. hostmaster.example.com. "
                                  "1 60 60 60 60"]
    assert await ex.answer("www.example.com", "A") == ["www.example.com. 30 IN A 192.0.2.201"]


async def search_path_by_pattern(ex: Example) -> None:
    r = await ex.ask("www.example.com.dc1.example.com", "AAAA")
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert lines(r.authority) == ["dc1.example.com. 60 IN SOA ns.dc1.example.com. hostmaster.dc1.example.com. "
                                  "1 60 60 60 60"]
    assert await ex.answer("www.example.com", "A") == ["www.example.com. 30 IN A 192.0.2.201"]  # fallthrough


async def addresses_both_ways(ex: Example) -> None:
    assert await ex.answer("ip-192-0-2-7.example", "A") == ["ip-192-0-2-7.example. 60 IN A 192.0.2.7"]
    assert await ex.answer("www.ip-192-0-2-7.example", "A") == ["www.ip-192-0-2-7.example. 60 IN A 192.0.2.7"]
    assert await ex.answer("7.2.0.192.in-addr.arpa", "PTR") == [
        "7.2.0.192.in-addr.arpa. 60 IN PTR ip-192-0-2-7.example."]
    assert await ex.answer("www.example", "A") == FORWARDED


async def ipv6_from_a_group(ex: Example) -> None:
    assert await ex.answer("host-1f.v6.example", "AAAA") == ["host-1f.v6.example. 60 IN AAAA 2001:db8::1f"]
    assert (await ex.ask("host-xyz.v6.example", "AAAA")).rcode() == dns.rcode.SERVFAIL  # no match, no fallthrough


async def hexadecimal(ex: Example) -> None:
    assert await ex.answer("ip0a7b7b7b.example", "A") == ["ip0a7b7b7b.example. 60 IN A 10.123.123.123"]
    assert await ex.answer("ip0a000102.example", "A") == ["ip0a000102.example. 60 IN A 10.0.1.2"]
    assert await ex.answer("www.example", "A") == FORWARDED


async def two_spellings(ex: Example) -> None:
    assert await ex.answer("ip-10-1-2-3.dc.example", "A") == ["ip-10-1-2-3.dc.example. 60 IN A 10.1.2.3"]
    assert await ex.answer("10.1.2.3.ext.example", "A") == ["10.1.2.3.ext.example. 60 IN A 10.1.2.3"]
    assert await ex.answer("www.example", "A") == FORWARDED


async def a_and_mx(ex: Example) -> None:
    r = await ex.ask("ip-10-0-0-5.example", "A")
    assert lines(r.answer) == ["ip-10-0-0-5.example. 60 IN A 10.0.0.5"]
    assert lines(r.authority) == ["example. 60 IN NS ns0.example.", "example. 60 IN NS ns1.example."]
    assert lines(r.additional) == ["ns0.example. 60 IN A 203.0.113.8", "ns1.example. 60 IN A 198.51.100.8"]
    r = await ex.ask("ip-10-0-0-5.example", "MX")
    assert lines(r.answer) == ["ip-10-0-0-5.example. 60 IN MX 10 ip-10-0-0-5.example."]
    assert lines(r.additional) == ["ip-10-0-0-5.example. 60 IN A 10.0.0.5"]
    assert await ex.answer("www.example", "A") == FORWARDED


async def srv_and_whoami(ex: Example) -> None:
    assert await ex.answer("_https._tcp.web1.example", "SRV") == [
        "_https._tcp.web1.example. 60 IN SRV 10 5 443 web1.example."]
    assert await ex.answer("_imap._tcp.mail.example", "SRV") == [
        "_imap._tcp.mail.example. 60 IN SRV 10 5 80 mail.example."]
    assert await ex.answer("whoami.example", "TXT") == ['whoami.example. 0 IN TXT "client 127.0.0.1"']


async def version_bind(ex: Example) -> None:
    assert await ex.answer("version.bind", "TXT", "CH") == ['version.bind. 0 CH TXT "interkube"']


async def cname(ex: Example) -> None:
    # The CNAME alone: the target is the client's to resolve (docs/divergences.md).
    assert await ex.answer("foogle.com", "A") == ["foogle.com. 60 IN CNAME google.com."]
    assert await ex.answer("foogle.com", "MX") == ["foogle.com. 60 IN CNAME google.com."]
    assert (await ex.ask("www.foogle.com", "A")).rcode() == dns.rcode.SERVFAIL  # no match, no fallthrough
    assert await ex.answer("google.com", "A") == ["google.com. 30 IN A 192.0.2.202"]


#: What each example, in README order, is said to do.
CHECKS = [everything_nxdomain, invalid_tld, search_path_by_zone, search_path_by_pattern, addresses_both_ways,
          ipv6_from_a_group, hexadecimal, two_spellings, a_and_mx, srv_and_whoami, version_bind, cname]


def test_every_example_is_checked() -> None:
    assert len(examples()) == len(CHECKS)


@pytest.mark.parametrize("index", range(len(CHECKS)), ids=[c.__name__ for c in CHECKS])
async def test_readme_example(index: int, serve: Serve, upstream: FakeUpstream) -> None:
    text = examples()[index]
    assert ".:5353 {" in text
    srv = await serve(text.replace(".:5353", ".:PORT").replace("127.0.0.1:5300", upstream.address))
    await CHECKS[index](Example(srv))

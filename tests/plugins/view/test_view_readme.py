"""Every example of the view plugin's README, started as written (each block bound to loopback,
on a free port, the upstreams fake ones on loopback) and checked to answer as the README says.

Clients on loopback ask over real sockets. The README's other client networks (10.0.0.0/8,
192.168.0.0/16, 2001:db8::/32, 192.0.2.0/24) cannot send from this host: their queries are
handed to the running listener's dispatcher as the socket would hand them, with that address as
the client's, so no packet leaves loopback."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from interkube.dns.wire import parse_query
from interkube.plugin.request import Request
from testkit.fakeupstream import FakeUpstream
from testkit.readme import on_port, readme_examples

Serve = Callable[[str], Awaitable[Any]]  # the `serve` fixture (tests/plugins/conftest.py)
#: The README's upstream addresses, each played by a fake upstream on loopback.
UPSTREAMS = ("10.0.0.1", "10.0.0.2", "10.0.0.6")


def on_loopback(text: str) -> str:
    """The example with every server block bound to 127.0.0.1 and ::1 (as written it would
    listen on every interface)."""
    return re.sub(r"^(\S[^\n]*\{)\n", r"\1\n    bind 127.0.0.1 ::1\n", text, flags=re.M)


@pytest.fixture
async def upstreams() -> AsyncIterator[dict[str, FakeUpstream]]:
    """A fake upstream per README address, each answering A, AAAA and TXT questions with what
    says which one it is."""
    fakes = {}
    for i, address in enumerate(UPSTREAMS):
        fake = await FakeUpstream().start()
        fake.behaviour.custom = _answering(i + 1)
        fakes[address] = fake
    yield fakes
    for fake in fakes.values():
        await fake.stop()


def _answering(n: int) -> Callable[[dns.message.Message], dns.message.Message]:
    def answer(query: dns.message.Message) -> dns.message.Message:
        resp = dns.message.make_response(query)
        q = query.question[0]
        rdata = {dns.rdatatype.A: f"198.51.100.{n}", dns.rdatatype.AAAA: f"2001:db8:100::{n}",
                 dns.rdatatype.TXT: f'"upstream {n}"'}.get(q.rdtype)
        if rdata is not None:
            resp.answer.append(dns.rrset.from_text(q.name, 30, "IN", q.rdtype, rdata))
        return resp
    return answer


class Example:
    """A README example running: ask it over loopback, or from another network through its
    dispatcher."""

    def __init__(self, running: Any) -> None:
        self.running = running
        self.port: int = running.port

    async def ask(self, name: str, rdtype: str = "A", *, source: str = "127.0.0.1", tcp: bool = False) -> list[str]:
        q = dns.message.make_query(name, dns.rdatatype.RdataType.make(rdtype))
        host = "::1" if ":" in source else "127.0.0.1"
        if tcp:
            r = await dns.asyncquery.tcp(q, host, port=self.port, source=source, timeout=3)
        else:
            r = await dns.asyncquery.udp(q, host, port=self.port, source=source, timeout=3)
        return answers(r)

    async def ask_from(self, client: str, name: str, rdtype: str = "A", *, proto: str = "udp") -> list[str]:
        return answers(await self.from_network(client, name, rdtype, proto))

    async def rcode_from(self, client: str, name: str, rdtype: str = "A") -> int:
        return (await self.from_network(client, name, rdtype, "udp")).rcode()

    async def from_network(self, client: str, name: str, rdtype: str, proto: str) -> dns.message.Message:
        wire = dns.message.make_query(name, dns.rdatatype.RdataType.make(rdtype)).to_wire()
        q = parse_query(wire)
        assert q is not None
        peer = (client, 40000, 0, 0) if ":" in client else (client, 40000)
        dispatcher = next(iter(self.running.server.instance.listeners.values())).dispatcher
        resp = await dispatcher.serve(Request(wire, q, peer, proto))
        assert resp is not None
        return dns.message.from_wire(resp)


def answers(r: dns.message.Message) -> list[str]:
    assert r.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(r.rcode())
    return [rd.to_text() for rs in r.answer for rd in rs]


async def by_client_network(ex: Example, up: dict[str, FakeUpstream]) -> None:
    assert await ex.ask_from("10.20.30.40", "test") == ["1.1.1.1"]
    assert await ex.ask_from("192.168.7.1", "test") == ["2.2.2.2"]
    assert await ex.ask_from("2001:db8:5::1", "test", "AAAA") == ["2001:db8::1"]
    assert await ex.ask_from("2001:db8:5::1", "test", "A") == []  # that block knows no A record
    for source in ("127.0.0.1", "::1"):  # everyone else
        assert await ex.ask("test", source=source) == ["3.3.3.3"]
    assert await ex.ask_from("172.16.0.1", "test") == ["3.3.3.3"]


async def by_type(ex: Example, up: dict[str, FakeUpstream]) -> None:
    assert await ex.ask("www.example.com") == ["198.51.100.3"]               # 10.0.0.6
    assert await ex.ask("www.example.com", "AAAA") == ["2001:db8:100::3"]
    assert await ex.ask("www.example.com", "TXT") == ['"upstream 1"']         # 10.0.0.1
    assert (len(up["10.0.0.6"].queries), len(up["10.0.0.1"].queries)) == (2, 1)


async def by_name(ex: Example, up: dict[str, FakeUpstream]) -> None:
    assert await ex.ask("abc.x.y.example.com") == ["198.51.100.2"]          # 10.0.0.2
    assert await ex.ask("ABC.Z.example.com", "TXT") == ['"upstream 2"']
    assert await ex.ask("abc.example.com") == ["198.51.100.1"]              # 10.0.0.1: no label between
    assert await ex.ask("www.abc.x.example.com") == ["198.51.100.1"]


async def split_horizon(ex: Example, up: dict[str, FakeUpstream], caplog: pytest.LogCaptureFixture) -> None:
    assert await ex.ask("www.example.org") == ["10.1.0.10"]                 # this host: internal
    assert await ex.ask("www.example.org", tcp=True) == ["10.1.0.10"]
    assert await ex.ask_from("10.9.8.7", "www.example.org") == ["10.1.0.10"]
    assert await ex.ask_from("198.51.100.7", "www.example.org") == ["203.0.113.10"]
    assert await ex.ask_from("2001:db8::7", "www.example.org") == ["203.0.113.10"]
    assert await ex.ask("www.example.net") == ["198.51.100.1"]              # forwarded, for internal clients
    assert await ex.ask_from("10.9.8.7", "www.example.net") == ["198.51.100.1"]
    assert await ex.rcode_from("198.51.100.7", "www.example.net") == dns.rcode.REFUSED  # the acl
    logged = [r.getMessage() for r in caplog.records if r.name == "interkube.query"]
    assert logged[:3] == ["127.0.0.1 www.example.org. A internal"] * 2 + ["10.9.8.7 www.example.org. A internal"]


async def two_conditions(ex: Example, up: dict[str, FakeUpstream]) -> None:
    assert await ex.ask_from("192.0.2.9", "a.example.net", "TXT", proto="tcp") == ['"tcp from 192.0.2.0/24"']
    assert await ex.ask_from("192.0.2.9", "a.example.net", "TXT") == ['"everyone else"']   # UDP
    assert await ex.ask("a.example.net", "TXT", tcp=True) == ['"everyone else"']          # 127.0.0.1
    assert await ex.ask_from("198.51.100.1", "a.example.net", "TXT", proto="tls") == ['"everyone else"']


CHECKS = [by_client_network, by_type, by_name, split_horizon, two_conditions]


def test_every_example_is_checked() -> None:
    assert len(readme_examples("view")) == len(CHECKS)


@pytest.mark.parametrize("index", range(len(CHECKS)), ids=[c.__name__ for c in CHECKS])
async def test_readme_example(index: int, serve: Serve, upstreams: dict[str, FakeUpstream],
                              interkube_caplog: pytest.LogCaptureFixture) -> None:
    text = on_loopback(on_port(readme_examples("view")[index], 0)).replace(":0 {", ":PORT {")
    for address, fake in upstreams.items():
        text = re.sub(rf"\b{re.escape(address)}\b", fake.address, text)
    ex = Example(await serve(text))
    check = CHECKS[index]
    if check is split_horizon:
        await split_horizon(ex, upstreams, interkube_caplog)
    else:
        await check(ex, upstreams)

"""Every example of the rewrite plugin's README, started as written (on a free port; the upstream
on loopback a fake one, the kubeconfig the test API server's) and asked what the README says it
answers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.edns
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from testkit.fakeupstream import FakeUpstream
from testkit.waiting import until

Serve = Callable[[str], Awaitable[Any]]
README = Path(__file__).resolve().parents[3] / "src" / "interkube" / "plugins" / "rewrite" / "README.md"
FENCE = re.compile(r"^~~~ corefile\n(.*?)^~~~", re.M | re.S)
KUBECONFIG = "/etc/interkube/kubeconfig"

#: What the fake upstream answers: (name, type) -> records, in order ("+" marks additional ones).
UPSTREAM: dict[tuple[str, str], list[str]] = {
    ("web.service.consul.", "A"): ["web.service.consul. 30 IN A 192.0.2.20"],
    ("_http._tcp.web.service.consul.", "SRV"): ["_http._tcp.web.service.consul. 30 IN SRV 0 0 80 web-0.service.consul.",
                                               "+web-0.service.consul. 30 IN A 192.0.2.20"],
    ("ftp.service.us-west-1.consul.", "A"): ["ftp.service.us-west-1.consul. 30 IN CNAME web.service.us-west-1.consul.",
                                             "web.service.us-west-1.consul. 30 IN A 10.10.10.10"],
    ("www.example.org.", "A"): ["www.example.org. 30 IN A 192.0.2.1"],
    ("my-app.com.", "A"): ["my-app.com. 200 IN CNAME my-app.example.",
                           "my-app.example. 200 IN CNAME my-app.com.cdn.example.net.",
                           "my-app.com.cdn.example.net. 300 IN A 20.2.0.1"],
    ("my-app.com.other.cdn.com.", "A"): ["my-app.com.other.cdn.com. 100 IN A 30.3.1.2"],
    ("www.example.org.", "HINFO"): ['www.example.org. 30 IN HINFO "RFC8482" ""'],
}


def examples() -> list[str]:
    return FENCE.findall(README.read_text())


def answer(query: dns.message.Message) -> dns.message.Message:
    resp = dns.message.make_response(query)
    q = query.question[0]
    lines = UPSTREAM.get((q.name.to_text().lower(), dns.rdatatype.to_text(q.rdtype)))
    if lines is None:
        resp.set_rcode(dns.rcode.NXDOMAIN)
    for line in lines or ():
        name, ttl, rdclass, rdtype, rdata = line.lstrip("+").split(None, 4)
        (resp.additional if line.startswith("+") else resp.answer).append(
            dns.rrset.from_text(name, int(ttl), rdclass, rdtype, rdata))
    return resp


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    up = await FakeUpstream().start()
    up.behaviour.custom = answer
    yield up
    await up.stop()


class Example:
    """One README example running, what it forwards to, and how to ask it."""

    def __init__(self, srv: Any, upstream: FakeUpstream, request: pytest.FixtureRequest) -> None:
        self.port: int = srv.port
        self.upstream = upstream
        self.request = request

    async def ask(self, name: str, rdtype: str = "A", **kw: Any) -> dns.message.Message:
        q = dns.message.make_query(name, rdtype, **kw)
        # dnspython refuses an answer whose question is not the one asked.
        return await dns.asyncquery.udp(q, "127.0.0.1", port=self.port, timeout=3)

    async def records(self, name: str, rdtype: str = "A", section: str = "answer") -> list[str]:
        r = await self.ask(name, rdtype)
        assert r.rcode() == dns.rcode.NOERROR, (name, rdtype, dns.rcode.to_text(r.rcode()))
        return lines(getattr(r, section))

    def sent(self) -> dns.message.Message:
        """The last query the upstream got."""
        return self.upstream.queries[-1][1]


def lines(rrsets: list[Any]) -> list[str]:
    return [f"{rs.name} {rs.ttl} {dns.rdatatype.to_text(rs.rdtype)} {rd}" for rs in rrsets for rd in rs]


async def exact_name(ex: Example) -> None:
    assert await ex.records("db.example.org") == ["db.example.org. 3600 A 192.0.2.10"]
    assert await ex.records("DB.Example.org") == ["DB.Example.org. 3600 A 192.0.2.10"]


async def kubernetes_service(ex: Example) -> None:
    kube = ex.request.getfixturevalue("kube")
    client = ex.request.getfixturevalue("kube_client")
    from lightkube.resources.core_v1 import Service

    ip = kube.service("default", "foo").spec.clusterIP
    try:
        async def answered() -> list[str]:
            r = await ex.ask("foo.example.com")
            return lines(r.answer) if r.rcode() == dns.rcode.NOERROR else []

        assert await until(answered, "foo.example.com answered from the Service") == [f"foo.example.com. 5 A {ip}"]
    finally:
        client.delete(Service, "foo", namespace="default")


async def whole_domain(ex: Example) -> None:
    assert await ex.records("web.corp.example") == ["web.corp.example. 30 A 192.0.2.20"]
    assert await ex.records("_http._tcp.web.corp.example", "SRV") == [
        "_http._tcp.web.corp.example. 30 SRV 0 0 80 web-0.corp.example."]
    assert await ex.records("_http._tcp.web.corp.example", "SRV", "additional") == [
        "web-0.corp.example. 30 A 192.0.2.20"]
    assert ex.sent().question[0].name.to_text() == "_http._tcp.web.service.consul."


async def regex_groups(ex: Example) -> None:
    assert await ex.records("ftp-us-west-1.example.org") == [
        "ftp-us-west-1.example.org. 30 CNAME web.service.us-west-1.consul.",
        "web.service.us-west-1.consul. 30 A 10.10.10.10"]
    assert ex.sent().question[0].name.to_text() == "ftp.service.us-west-1.consul."


async def answer_patterns(ex: Example) -> None:
    assert await ex.records("ftp-us-west-1.example.org") == [
        "ftp-us-west-1.example.org. 30 CNAME web-us-west-1.example.org.",
        "web-us-west-1.example.org. 30 A 10.10.10.10"]


async def continue_chain(ex: Example) -> None:
    assert await ex.records("www.internal.example.org") == ["www.internal.example.org. 3600 A 192.0.2.30"]
    assert await ex.records("www.example.org") == ["www.example.org. 3600 A 192.0.2.30"]


async def ttl_range(ex: Example) -> None:
    assert await ex.records("www.example.org") == ["www.example.org. 30 A 192.0.2.10"]


async def rcode_map(ex: Example) -> None:
    r = await ex.ask("nope.example.org")
    assert (r.rcode(), r.answer) == (dns.rcode.NOERROR, [])
    assert await ex.records("www.example.org") == ["www.example.org. 3600 A 192.0.2.10"]


def options(msg: dns.message.Message) -> list[tuple[int, bytes]]:
    return [(int(o.otype), o.to_wire()) for o in msg.options]


async def client_ip_option(ex: Example) -> None:
    assert await ex.records("www.example.org") == ["www.example.org. 30 A 192.0.2.1"]
    assert options(ex.sent()) == [(0xFFEE, bytes([127, 0, 0, 1]))]


async def revert(ex: Example) -> None:
    r = await ex.ask("www.example.org", use_edns=0)
    assert lines(r.answer) == ["www.example.org. 3600 A 192.0.2.10"]
    assert options(r) == [(0xFFEE, b"abcd")]


async def client_subnet(ex: Example) -> None:
    assert await ex.records("www.example.org") == ["www.example.org. 30 A 192.0.2.1"]
    ecs = [o for o in ex.sent().options if isinstance(o, dns.edns.ECSOption)]
    assert [(o.address, o.srclen) for o in ecs] == [("127.0.0.0", 24)]


async def cdn_cname(ex: Example) -> None:
    assert await ex.records("my-app.com") == ["my-app.com. 200 CNAME my-app.example.",
                                              "my-app.example. 200 CNAME my-app.com.other.cdn.com.",
                                              "my-app.com.other.cdn.com. 100 A 30.3.1.2"]


async def any_as_hinfo(ex: Example) -> None:
    r = await ex.ask("www.example.org", "ANY")
    assert r.question[0].rdtype == dns.rdatatype.ANY
    assert lines(r.answer) == ['www.example.org. 30 HINFO "RFC8482" ""']


#: What each example, in README order, is said to do.
CHECKS = [exact_name, kubernetes_service, whole_domain, regex_groups, answer_patterns, continue_chain, ttl_range,
          rcode_map, client_ip_option, revert, client_subnet, cdn_cname, any_as_hinfo]


def test_every_example_is_checked() -> None:
    assert len(examples()) == len(CHECKS)


@pytest.mark.parametrize("index", range(len(CHECKS)), ids=[c.__name__ for c in CHECKS])
async def test_readme_example(index: int, serve: Serve, upstream: FakeUpstream, request: pytest.FixtureRequest) -> None:
    text = examples()[index]
    assert ".:5353 {" in text
    text = text.replace(".:5353", ".:PORT").replace("127.0.0.1:5300", upstream.address)
    if KUBECONFIG in text:
        text = text.replace(KUBECONFIG, str(request.getfixturevalue("kube_api").kubeconfig))
    srv = await serve(text)
    await CHECKS[index](Example(srv, upstream, request))

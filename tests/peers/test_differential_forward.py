"""Several `forward` directives per server block, `next`, `next_on_nodata`, `failover` and
`except`, compared with CoreDNS 1.15: the same Corefile given to both servers, the same
questions to both, the answers compared (rcode, flags, every section).

The upstreams are real servers on loopback: unbound (the zone example., with NXDOMAIN and NODATA
answers), dnsmasq (lab.example names; REFUSED for anything else, having no upstream of its
own) and a scripted upstream that answers SERVFAIL to everything. Every difference must be one
that ``DOCUMENTED`` maps to a section of docs/divergences.md, and each documented case must
still differ; the counts are printed in the peers' report.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from testkit.coredns import CoreDNS
from testkit.fakeupstream import Behaviour, in_thread
from testkit.peers import free_udp_tcp_port
from testkit.servers import dnsmasq, in_process, unbound

DIVERGENCES = Path(__file__).resolve().parents[2] / "docs" / "divergences.md"

#: Case id -> the section of docs/divergences.md that explains its difference.
DOCUMENTED: dict[str, str] = {"cidr-from:1.1.0.10.in-addr.arpa.PTR": "D20"}


@dataclass(frozen=True)
class Scenario:
    """One server block (its forwards, with {U} = unbound, {D} = dnsmasq, {S} = SERVFAIL) and its questions."""

    name: str
    body: str
    questions: tuple[tuple[str, str], ...]


QUESTIONS = (("a.example.", "A"), ("nodata.example.", "A"), ("nx.example.", "A"), ("a.lab.example.", "A"),
             ("a.lab.example.", "AAAA"), ("b.lab.example.", "A"), ("other.zz.", "A"), ("example.", "SOA"),
             ("lab.example.", "A"))

SCENARIOS = (
    Scenario("per-domain", "forward lab.example {D}\n forward example {U}\n", QUESTIONS),
    Scenario("per-domain-root", "forward lab.example {D}\n forward example {U}\n forward . {S}\n", QUESTIONS),
    Scenario("parent-first", "forward example {U}\n forward lab.example {D}\n", QUESTIONS),
    Scenario("next-chain", "forward . {S} {\n  next SERVFAIL\n }\n forward . {U} {\n  next NXDOMAIN REFUSED\n }\n"
                           " forward . {D}\n", QUESTIONS),
    Scenario("next-last-ignored", "forward . {U} {\n  next NXDOMAIN\n }\n", QUESTIONS),
    Scenario("next-on-nodata", "forward . {U} {\n  next_on_nodata\n }\n forward . {D}\n", QUESTIONS),
    Scenario("failover", "forward . {S} {U} {\n  policy sequential\n  failover SERVFAIL REFUSED\n }\n", QUESTIONS),
    Scenario("failover-all", "forward . {S} {D} {\n  policy sequential\n  failover SERVFAIL REFUSED\n }\n", QUESTIONS),
    Scenario("failover-then-next", "forward . {S} {D} {\n  policy sequential\n  failover SERVFAIL\n"
                                   "  next SERVFAIL REFUSED\n }\n forward . {U}\n", QUESTIONS),
    Scenario("no-failover", "forward . {S} {U} {\n  policy sequential\n }\n", QUESTIONS),
    Scenario("except", "forward . {U} {\n  except lab.example\n }\n forward . {D}\n", QUESTIONS),
    Scenario("except-from", "forward example {U} {\n  except example lab.example\n }\n forward . {D}\n", QUESTIONS),
    Scenario("except-only", "forward . {U} {\n  except lab.example\n }\n", QUESTIONS),
    # A FROM CIDR that does not end on an octet: CoreDNS forwards its first reverse zone only.
    Scenario("cidr-from", "forward 10.0.0.0/23 {U}\n",
             (("1.0.0.10.in-addr.arpa.", "PTR"), ("1.1.0.10.in-addr.arpa.", "PTR"), ("a.example.", "A"))),
)


@dataclass
class Upstreams:
    unbound: int
    dnsmasq: int
    servfail: str

    def fill(self, body: str) -> str:
        return (body.replace("{U}", f"127.0.0.1:{self.unbound}").replace("{D}", f"127.0.0.1:{self.dnsmasq}")
                .replace("{S}", self.servfail))


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Upstreams]:
    from testkit.servers import free_port

    u, d = free_port(), free_port()
    with unbound(u, ["a.example. 300 IN A 192.0.2.1", "nodata.example. 300 IN TXT x",
                     "lab.example. 300 IN A 192.0.2.9"], extra='    local-zone: "zz." refuse'), \
            dnsmasq(d, {"a.lab.example": ["198.51.100.1"], "b.lab.example": ["198.51.100.2"]}), \
            in_thread(Behaviour(rcode=dns.rcode.SERVFAIL)) as s:
        yield Upstreams(u, d, s.address)


def corefile(ups: Upstreams, ports: dict[str, int]) -> str:
    blocks = [f".:{ports[sc.name]} {{\n bind 127.0.0.1\n {ups.fill(sc.body)}}}\n" for sc in SCENARIOS]
    return "".join(blocks)


def shape(msg: dns.message.Message | None) -> dict[str, Any]:
    """What is compared of an answer."""
    if msg is None:
        return {"rcode": "no answer"}
    return {
        "rcode": dns.rcode.to_text(msg.rcode()),
        "flags": sorted(f for f in ("AA", "TC", "RD", "RA") if msg.flags & dns.flags.Flag[f]),
        "answer": sorted(rrset.to_text() for rrset in msg.answer),
        "authority": sorted(rrset.to_text() for rrset in msg.authority),
        "additional": sorted(rrset.to_text() for rrset in msg.additional),
    }


async def ask(port: int, name: str, rdtype: str) -> dns.message.Message | None:
    q = dns.message.make_query(name, dns.rdatatype.from_text(rdtype))
    try:
        return await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=8)
    except dns.exception.Timeout:
        return None


@dataclass
class Compared:
    case: str
    coredns: dict[str, Any]
    interkube: dict[str, Any]

    @property
    def differs(self) -> list[str]:
        return [k for k in self.interkube if self.interkube.get(k) != self.coredns.get(k)] or (
            ["rcode"] if set(self.coredns) != set(self.interkube) else [])


def documented_sections() -> set[str]:
    return set(re.findall(r"^## (D\d+)\. ", DIVERGENCES.read_text(), re.M))


async def test_forward_chains_answer_as_coredns_does(upstreams: Upstreams, coredns: Callable[..., CoreDNS],
                                                     peer_report: Callable[[str], None]) -> None:
    cd_ports = {sc.name: free_udp_tcp_port() for sc in SCENARIOS}
    ik_ports = {sc.name: free_udp_tcp_port() for sc in SCENARIOS}
    # CoreDNS's probe asks its -dns.port: one more block answers there.
    coredns(corefile(upstreams, cd_ports) + ". {\n bind 127.0.0.1\n whoami\n}\n")
    results: list[Compared] = []
    async with in_process(corefile(upstreams, ik_ports)):
        for sc in SCENARIOS:
            for name, rdtype in sc.questions:
                cd, ik = await asyncio.gather(ask(cd_ports[sc.name], name, rdtype),
                                              ask(ik_ports[sc.name], name, rdtype))
                results.append(Compared(f"{sc.name}:{name}{rdtype}", shape(cd), shape(ik)))
    different = [r for r in results if r.differs]
    lines = [f"forward chains vs CoreDNS 1.15: {len(results) - len(different)} identical, "
             f"{len(different)} different (of {len(results)})"]
    lines += [f"  {r.case}: {', '.join(r.differs)} ({DOCUMENTED.get(r.case, 'UNDOCUMENTED')})" for r in different]
    peer_report("\n".join(lines))
    undocumented = [r for r in different if r.case not in DOCUMENTED]
    assert not undocumented, "\n".join(f"{r.case}: coredns {r.coredns} / interkube {r.interkube}" for r in undocumented)
    stale = set(DOCUMENTED) - {r.case for r in different}
    assert not stale, f"documented differences that are gone: {sorted(stale)}"
    assert set(DOCUMENTED.values()) <= documented_sections()
    # Not a corpus of SERVFAILs: most answers hold records or a real rcode from the upstreams.
    assert sum(1 for r in results if r.interkube["rcode"] == "NOERROR" and r.interkube["answer"]) >= 20

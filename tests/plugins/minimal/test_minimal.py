"""minimal: successful answers lose their authority and additional records (the OPT record
stays), everything else passes as it is; on the wire, through the server, the README examples."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import dns.edns
import dns.message
import dns.opcode
import dns.rcode
import dns.rrset
import pytest

from interkube.plugins.minimal.handler import minimize
from testkit.fakeupstream import FakeUpstream
from testkit.readme import on_port, readme_examples
from testkit.servers import aquery, free_port, in_process

ZONE = """$ORIGIN example.org.
@ 3600 IN SOA ns.example.org. admin.example.org. 1 7200 3600 1209600 3600
@ 3600 IN NS ns.example.org.
ns 3600 IN A 192.0.2.53
www 3600 IN A 192.0.2.10
"""


def response(qname: str, qtype: str, *, answer: Sequence[str] = (), authority: Sequence[str] = (),
             additional: Sequence[str] = (), rcode: int = 0, edns: bool = True,
             options: list[dns.edns.Option] | None = None) -> dns.message.Message:
    q = dns.message.make_query(qname, qtype, use_edns=0 if edns else False)
    r = dns.message.make_response(q)
    if options:
        r.use_edns(0, 0, 1232, options=options)
    r.set_rcode(dns.rcode.Rcode(rcode))
    for section, texts in ((r.answer, answer), (r.authority, authority), (r.additional, additional)):
        for text in texts:
            name, ttl, rdclass, rdtype, rdata = text.split(None, 4)
            section.append(dns.rrset.from_text(name, int(ttl), rdclass, rdtype, rdata))
    return r


def sections(wire: bytes) -> tuple[list[str], list[str], list[str], int, list[int]]:
    m = dns.message.from_wire(wire)
    return ([rs.to_text() for rs in m.answer], [rs.to_text() for rs in m.authority],
            [rs.to_text() for rs in m.additional], m.edns, [o.otype for o in m.options])


def test_a_success_keeps_its_answer_and_opt_record() -> None:
    r = response("www.example.org.", "A", answer=["www.example.org. 60 IN A 192.0.2.10"],
                 authority=["example.org. 60 IN NS ns.example.org."],
                 additional=["ns.example.org. 60 IN A 192.0.2.53"],
                 options=[dns.edns.GenericOption(dns.edns.OptionType.NSID, b"id")])
    out = minimize(r.to_wire(), 1)
    assert sections(out) == (["www.example.org. 60 IN A 192.0.2.10"], [], [], 0, [dns.edns.OptionType.NSID])
    # Without EDNS there is no OPT record to keep.
    r.use_edns(False)
    assert sections(minimize(r.to_wire(), 1))[:4] == (["www.example.org. 60 IN A 192.0.2.10"], [], [], -1)


def test_an_empty_noerror_without_soa_or_ns_is_a_success() -> None:
    r = response("a.example.", "A", additional=["x.example. 60 IN TXT hello"])
    assert sections(minimize(r.to_wire(), 1))[:3] == ([], [], [])


@pytest.mark.parametrize("build", [
    # NODATA, NXDOMAIN, a referral, an error, an answer with only its OPT record beside it.
    lambda: response("a.example.org.", "TXT", authority=["example.org. 60 IN SOA ns. admin. 1 2 3 4 5"],
                     additional=["ns. 60 IN A 192.0.2.1"]),
    lambda: response("a.example.org.", "A", rcode=3, authority=["example.org. 60 IN SOA ns. admin. 1 2 3 4 5"]),
    lambda: response("a.sub.example.", "A", authority=["sub.example. 60 IN NS ns.sub.example."],
                     additional=["ns.sub.example. 60 IN A 192.0.2.1"]),
    lambda: response("a.example.", "A", rcode=2, additional=["x.example. 60 IN TXT hello"]),
    lambda: response("a.example.", "A", answer=["a.example. 60 IN A 192.0.2.1"]),
])
def test_denials_referrals_errors_and_bare_answers_pass_as_they_are(
        build: Callable[[], dns.message.Message]) -> None:
    wire = build().to_wire()
    assert minimize(wire, 1) is wire


def test_zone_transfers_and_notify_pass() -> None:
    r = response("example.org.", "AXFR", answer=["example.org. 60 IN NS ns.example.org."],
                 additional=["ns.example.org. 60 IN A 192.0.2.53"])
    wire = r.to_wire()
    assert minimize(wire, 252) is wire
    r = response("example.org.", "SOA", answer=["example.org. 60 IN SOA ns. admin. 1 2 3 4 5"],
                 additional=["ns.example.org. 60 IN A 192.0.2.53"])
    r.set_opcode(dns.opcode.NOTIFY)
    wire = r.to_wire()
    assert minimize(wire, 6) is wire


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    up = await FakeUpstream().start()

    def with_extras(q: dns.message.Message) -> dns.message.Message:
        r = response(q.question[0].name.to_text(), "A", answer=["www.example.org. 60 IN A 192.0.2.10"],
                     authority=["example.org. 60 IN NS ns.example.org."],
                     additional=["ns.example.org. 60 IN A 192.0.2.53"])
        r.id = q.id
        return r

    up.behaviour.custom = with_extras
    yield up
    await up.stop()


@pytest.mark.parametrize("index", [0, 1])
async def test_readme_examples(index: int, upstream: FakeUpstream, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    examples = readme_examples("minimal")
    assert len(examples) == 2
    monkeypatch.chdir(tmp_path)  # the file example names its zone file relative to here
    (tmp_path / "db.example.org").write_text(ZONE)
    port = free_port()
    async with in_process(on_port(examples[index], port).replace("127.0.0.1:5300", upstream.address)):
        r = await aquery("www.example.org", "A", port, use_edns=0)
        assert [rs.to_text() for rs in r.answer] == [f"www.example.org. {60 if index == 0 else 3600} IN A 192.0.2.10"]
        assert not r.authority and not r.additional and r.edns == 0
        if index == 1:  # a denial keeps its SOA
            r = await aquery("nothing.example.org", "A", port)
            assert r.rcode() == dns.rcode.NXDOMAIN and r.authority

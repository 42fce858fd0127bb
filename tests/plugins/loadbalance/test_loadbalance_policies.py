"""loadbalance's policies beyond the plain shuffle: weighted (the first address drawn by the
weight file), round_robin with prefer, what is left alone (errors, transfers), the parse errors
(options not supported named as such), and the README's examples."""

from __future__ import annotations

import ipaddress
import random
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import dns.rrset
import pytest

from interkube.corefile.parser import parse_text
from interkube.errors import ConfigError
from interkube.plugin.services import Services
from interkube.plugins.loadbalance.handler import balanced, shuffle_answer, weighted_top
from interkube.plugins.loadbalance.parse import LoadbalanceConfig, parse
from interkube.plugins.loadbalance.weights import WeightFileError, parse_weights
from interkube.server.runtime import build
from testkit.corefile import directive
from testkit.fakeupstream import FakeUpstream
from testkit.readme import on_port, readme_examples
from testkit.servers import aquery, free_port, in_process

Serve = Callable[[str], Awaitable[Any]]  # the `serve` fixture (tests/plugins/conftest.py)
WEIGHTS = "# the README's file\nwww.example.com\n100.64.1.1 3\n100.64.1.2 1\n100.64.1.3 2\n"
ZONE = """$ORIGIN example.com.
@ 3600 IN SOA ns.example.com. admin.example.com. 1 7200 3600 1209600 3600
www 3600 IN A 100.64.1.1
www 3600 IN A 100.64.1.2
www 3600 IN A 100.64.1.3
"""


def answer(qname: str, qtype: str, *sections: list[str], rcode: int = 0) -> bytes:
    """A response with the given answer (and additional) records, each `NAME TTL CLASS TYPE DATA`."""
    q = dns.message.make_query(qname, qtype)
    r = dns.message.make_response(q)
    r.set_rcode(dns.rcode.Rcode(rcode))
    for section, texts in zip((r.answer, r.additional), sections, strict=False):
        for text in texts:
            name, ttl, rdclass, rdtype, rdata = text.split(None, 4)
            found = section and section[-1].name == dns.name.from_text(name) and section[-1].rdtype.name == rdtype
            if found:
                section[-1].add(dns.rdata.from_text(rdclass, rdtype, rdata))
            else:
                section.append(dns.rrset.from_text(name, int(ttl), rdclass, rdtype, rdata))
    return r.to_wire()


def addresses(wire: bytes, section: str = "answer") -> list[str]:
    msg = dns.message.from_wire(wire)
    return [rd.to_text() for rrset in getattr(msg, section) if rrset.rdtype in (1, 28) for rd in rrset]


# -- parsing ---------------------------------------------------------------------------------

def test_parse_forms(tmp_path: Path) -> None:
    assert parse(directive("loadbalance")).policy == "round_robin"
    cfg = parse(directive("loadbalance weighted w.txt {\n reload 10s\n}"))
    assert (cfg.policy, cfg.weight_file, cfg.reload) == ("weighted", "w.txt", 10.0)
    assert parse(directive("loadbalance weighted w.txt")).reload == 30.0
    cfg = parse(directive("loadbalance round_robin {\n prefer 10.9.20.0/24 192.168.1.0/24\n}"))
    assert [str(n) for n in cfg.prefer] == ["10.9.20.0/24", "192.168.1.0/24"]
    assert parse(directive("loadbalance {\n prefer fd00::/8\n}")) == LoadbalanceConfig(
        prefer=(ipaddress.ip_network("fd00::/8"),), where="Corefile:2")


@pytest.mark.parametrize("body, line, words", [
    ("loadbalance weighted", 2, "loadbalance: weighted needs a weight file"),
    ("loadbalance weighted w.txt extra", 2, "unexpected argument 'extra' after the weight file"),
    ("loadbalance random", 2, "unknown policy 'random' (expected round_robin or weighted)"),
    ("loadbalance round_robin x", 2, "round_robin takes no argument, got 'x'"),
    ("loadbalance weighted w.txt {\n prefer 10.0.0.0/8\n}", 3,
     "loadbalance: option 'prefer' with the weighted policy is not supported"),
    ("loadbalance {\n reload 10s\n}", 3, "loadbalance: option 'reload' with the round_robin policy is not supported"),
    ("loadbalance {\n prefer 10.0.0.1\n}", 3, "invalid CIDR '10.0.0.1' for prefer"),
    ("loadbalance weighted w.txt {\n reload 10s\n reload 20s\n}", 4, "option 'reload' given twice"),
    ("loadbalance weighted w.txt {\n every 10s\n}", 3, "loadbalance weighted: unknown option 'every'"),
    ("loadbalance {\n shuffle\n}", 3, "loadbalance: unknown option 'shuffle'"),
])
def test_parse_errors(body: str, line: int, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(directive(body))
    assert str(info.value).startswith(f"Corefile:{line}: ") and words in str(info.value), str(info.value)


def test_weight_files() -> None:
    weights = parse_weights(WEIGHTS + "Other.Example\n2001:db8::1 255\n", "w")
    assert weights == {b"\x03www\x07example\x03com\x00": {bytes([100, 64, 1, 1]): 3, bytes([100, 64, 1, 2]): 1,
                                                           bytes([100, 64, 1, 3]): 2},
                       b"\x05other\x07example\x00": {bytes.fromhex("20010db8" + "0" * 23 + "1"): 255}}
    for text, words in (("10.0.0.1\n", "w:1: '10.0.0.1' is an address, not a domain name"),
                        ("a.example\nnot-an-ip 3\n", "w:2: invalid IP address 'not-an-ip'"),
                        ("a.example\n10.0.0.1 0\n", "w:2: invalid weight '0' (expected 1 to 255)"),
                        ("a.example\n10.0.0.1 256\n", "w:2: invalid weight '256'"),
                        ("10.0.0.1 3\n", "w:1: an address before any domain name"),
                        ("a.example\n10.0.0.1 3 x\n", "w:2: cannot read '10.0.0.1 3 x'")):
        with pytest.raises(WeightFileError, match=re.escape(words)):
            parse_weights(text, "w")


def test_a_bad_or_missing_weight_file_at_start(tmp_path: Path) -> None:
    bad = tmp_path / "bad.weights"
    bad.write_text("www.example.com\n100.64.1.1 x\n")
    with pytest.raises(ConfigError, match=rf"Corefile:2: loadbalance: {bad}:2: invalid weight 'x'"):
        build(parse_text(f". {{\n loadbalance weighted {bad}\n}}\n", "Corefile"), "Corefile", Services())
    missing = tmp_path / "missing.weights"
    with pytest.raises(ConfigError, match="Corefile:2: loadbalance: cannot read weight file"):
        build(parse_text(f". {{\n loadbalance weighted {missing} {{\n  reload 0\n }}\n}}\n", "Corefile"),
              "Corefile", Services())
    # Looked at again later: the configuration starts, every address weighing 1 meanwhile.
    built = build(parse_text(f". {{\n loadbalance weighted {missing}\n}}\n", "Corefile"), "Corefile", Services())
    assert built.handlers[0].weights == {}  # type: ignore[attr-defined]


# -- on the wire -----------------------------------------------------------------------------

def test_weighted_draws_the_first_address_by_weight() -> None:
    weights = parse_weights(WEIGHTS, "w")
    wire = answer("WWW.example.com.", "A", [f"www.example.com. 60 IN A 100.64.1.{i}" for i in (1, 2, 3)])
    rng = random.Random(42)
    firsts = Counter(addresses(weighted_top(wire, 1, weights, rng))[0] for _ in range(6000))
    assert firsts["100.64.1.1"] > firsts["100.64.1.3"] > firsts["100.64.1.2"]
    assert abs(firsts["100.64.1.1"] / firsts["100.64.1.2"] - 3) < 0.3
    assert abs(firsts["100.64.1.3"] / firsts["100.64.1.2"] - 2) < 0.2
    out = weighted_top(wire, 1, weights, rng)
    assert sorted(addresses(out)) == sorted(addresses(wire)) and len(out) == len(wire)
    # Not an A, AAAA or SRV question: untouched; no weights known: uniform.
    assert weighted_top(wire, 16, weights, rng) is wire
    assert len(Counter(addresses(weighted_top(wire, 1, {}, rng))[0] for _ in range(300))) == 3


def test_weighted_in_the_additional_section_of_srv_answers() -> None:
    weights = parse_weights("b.example\n192.0.2.2 255\nc.example\n2001:db8::3 255\n", "w")
    wire = answer("_s._tcp.example.", "SRV", ["_s._tcp.example. 60 IN SRV 0 0 80 a.example.",
                                              "_s._tcp.example. 60 IN SRV 0 0 80 b.example.",
                                              "_s._tcp.example. 60 IN SRV 0 0 80 c.example."],
                  ["a.example. 60 IN A 192.0.2.1", "b.example. 60 IN A 192.0.2.2", "c.example. 60 IN AAAA 2001:db8::3"])
    rng = random.Random(1)
    firsts = Counter(addresses(weighted_top(wire, 33, weights, rng), "additional")[0] for _ in range(400))
    # b (an A record of another name: swapped whole) and c (an AAAA: re-rendered) far ahead of a.
    assert firsts["192.0.2.2"] > 150 and firsts["2001:db8::3"] > 150 and firsts["192.0.2.1"] < 20
    msg = dns.message.from_wire(weighted_top(wire, 33, weights, random.Random(3)))
    assert {rs.name.to_text(): [rd.to_text() for rd in rs] for rs in msg.additional} == {
        "a.example.": ["192.0.2.1"], "b.example.": ["192.0.2.2"], "c.example.": ["2001:db8::3"]}


def test_prefer_puts_the_networks_first_in_their_order() -> None:
    parsed = parse(directive("loadbalance {\n prefer 192.168.1.0/24 10.9.20.0/24\n}"))
    ips = ["10.9.20.1", "8.8.8.8", "192.168.1.5", "10.9.20.2", "1.1.1.1", "192.168.1.6"]
    wire = answer("x.example.", "A", [f"x.example. 60 IN A {ip}" for ip in ips])
    seen = set()
    for seed in range(20):
        out = addresses(shuffle_answer(wire, random.Random(seed), parsed.prefer))
        assert sorted(out[:2]) == ["192.168.1.5", "192.168.1.6"]
        assert sorted(out[2:4]) == ["10.9.20.1", "10.9.20.2"] and sorted(out[4:]) == ["1.1.1.1", "8.8.8.8"]
        seen.add(tuple(out))
    assert len(seen) > 1  # still shuffled within each network


def test_errors_and_transfers_are_left_alone() -> None:
    records = [f"x.example. 60 IN A 192.0.2.{i}" for i in range(1, 5)]
    assert balanced(answer("x.example.", "A", records), 1)
    assert not balanced(answer("x.example.", "A", records, rcode=3), 1)  # NXDOMAIN with records
    assert not balanced(answer("x.example.", "AXFR", records), 252)
    assert not balanced(answer("x.example.", "A", records[:1]), 1)


# -- through the server ----------------------------------------------------------------------

async def test_weighted_through_the_server_and_a_changed_file(serve: Serve, tmp_path: Path) -> None:
    (tmp_path / "db").write_text(ZONE)
    (tmp_path / "w").write_text(WEIGHTS)
    running = await serve(f"example.com:PORT {{\n bind 127.0.0.1\n file {tmp_path / 'db'}\n"
                          f" loadbalance weighted {tmp_path / 'w'}\n}}\n")
    handler = running.handler("loadbalance")
    handler.rng = random.Random(5)
    firsts = Counter()
    for _ in range(600):
        r = await running.query("www.example.com", "A")
        firsts[r.answer[0][0].address] += 1  # dnspython keeps the wire order within the set
    assert firsts["100.64.1.1"] > firsts["100.64.1.3"] > firsts["100.64.1.2"] > 0
    (tmp_path / "w").write_text("www.example.com\n100.64.1.2 255\n")
    await handler.check()
    firsts = Counter()
    for _ in range(100):
        firsts[(await running.query("www.example.com", "A")).answer[0][0].address] += 1
    assert firsts["100.64.1.2"] > 90


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    up = await FakeUpstream().start()
    up.behaviour.records = {("a.example.", "A"): ["192.0.2.1", "10.9.20.7", "192.168.1.9", "192.0.2.4"]}
    yield up
    await up.stop()


@pytest.mark.parametrize("index", [0, 1, 2])
async def test_readme_examples(index: int, upstream: FakeUpstream, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    examples = readme_examples("loadbalance")
    assert len(examples) == 3
    monkeypatch.chdir(tmp_path)
    (tmp_path / "db.example.com").write_text(ZONE)
    (tmp_path / "db.example.com.weights").write_text(WEIGHTS)
    port = free_port()
    async with in_process(on_port(examples[index], port).replace("127.0.0.1:5300", upstream.address)):
        name = "www.example.com" if index == 1 else "a.example."
        orders = [[rd.address for rd in (await aquery(name, "A", port)).answer[0]] for _ in range(100)]
    if index == 0:
        assert len({tuple(o) for o in orders}) > 1
    elif index == 1:
        firsts = Counter(o[0] for o in orders)
        assert set(firsts) == {"100.64.1.1", "100.64.1.2", "100.64.1.3"}
        assert all(sorted(o) == ["100.64.1.1", "100.64.1.2", "100.64.1.3"] for o in orders)
    else:
        assert all(o[:2] == ["10.9.20.7", "192.168.1.9"] for o in orders)
        assert len({tuple(o[2:]) for o in orders}) == 2

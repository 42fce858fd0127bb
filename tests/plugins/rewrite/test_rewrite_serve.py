"""rewrite in a running server: each rule type, the traps CoreDNS users met (letter case, continue
chains with answer rewriting, CNAME and SRV targets, the question restored, invalid names), the
fast path and the memo of rewritten answers, and rewrite in front of cache and kubernetes."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from interkube.dns.wire import parse_query
from interkube.plugin.answers import InlineBuilds
from interkube.plugin.request import Request
from interkube.plugins.rewrite import handler as rewrite_handler
from testkit.fakekube import service, write_snapshot
from testkit.fakeupstream import FakeUpstream
from testkit.waiting import until

Serve = Callable[[str], Awaitable[Any]]
HOSTS = "    hosts {\n        192.0.2.1 www.example.org\n        192.0.2.2 db.example.org\n    }\n"


def block(*lines: str, tail: str = HOSTS) -> str:
    body = "".join(f"    {line}\n" for line in lines)
    return f".:PORT {{\n    bind 127.0.0.1\n{body}{tail}}}\n"


def texts(rrsets: list[Any]) -> list[str]:
    """Records as text, in lower case: names other than the question's may take the client's
    letters where they end in it (they are compressed into it), as in every answer interkube
    gives; the question's own name is checked letter by letter where that matters."""
    return sorted(f"{rs.name} {rs.ttl} {dns.rdatatype.to_text(rs.rdtype)} {rd}".lower() for rs in rrsets for rd in rs)


async def ask(srv: Any, name: str, rdtype: str = "A", **kw: Any) -> dns.message.Message:
    """Asked with dnspython, which refuses an answer whose question is not the one asked."""
    q = dns.message.make_query(name, rdtype, **kw)
    return await dns.asyncquery.udp(q, "127.0.0.1", port=srv.port, timeout=3)


def fast(srv: Any, wire: bytes) -> bytes | None:
    """The rewrite handler's fast path for one query (None: it had to go to the slow path)."""
    q = parse_query(wire)
    assert q is not None
    return srv.handler("rewrite").fast(Request(wire, q, ("127.0.0.1", 40000), "udp"))  # type: ignore[no-any-return]


class Answers:
    """A fake upstream's answers: (name, type) -> records in zone-file form, in order."""

    def __init__(self, records: dict[tuple[str, str], list[str]]) -> None:
        self.records = records

    def __call__(self, query: dns.message.Message) -> dns.message.Message:
        resp = dns.message.make_response(query)
        q = query.question[0]
        lines = self.records.get((q.name.to_text().lower(), dns.rdatatype.to_text(q.rdtype)))
        if lines is None:
            resp.set_rcode(dns.rcode.NXDOMAIN)
            return resp
        for line in lines:
            section = resp.additional if line.startswith("+") else resp.answer
            section.append(dns.rrset.from_text(*_split(line.lstrip("+"))))
        return resp


def _split(line: str) -> tuple[str, int, str, str, str]:
    name, ttl, rdclass, rdtype, rdata = line.split(None, 4)
    return name, int(ttl), rdclass, rdtype, rdata


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    up = await FakeUpstream().start()
    yield up
    await up.stop()


# --- names -------------------------------------------------------------------------------------


async def test_exact_answers_the_clients_name_in_its_letters(serve: Serve) -> None:
    srv = await serve(block("rewrite name exact foo.example.org www.example.org"))
    for name in ("foo.example.org", "FoO.ExAmple.ORG", "foo.EXAMPLE.org"):
        r = await ask(srv, name, use_edns=0)
        assert r.rcode() == dns.rcode.NOERROR
        # The owner is written as the client wrote the question (CoreDNS writes it in lower
        # case: docs/divergences.md), byte for byte.
        assert [rs.name.to_text() for rs in r.answer] == [name + "."]
        assert texts(r.answer) == [f"{name.lower()}. 3600 a 192.0.2.1"]
    # No rule: passed on untouched.
    assert texts((await ask(srv, "db.example.org")).answer) == ["db.example.org. 3600 a 192.0.2.2"]


async def test_match_types_as_coredns_normalises_them(serve: Serve) -> None:
    srv = await serve(block("rewrite continue name prefix foo www", "rewrite continue name substring old db",
                            r"rewrite name regex ^x-(.*)\.example\.org\.$ {1}.example.org answer auto"))
    # prefix `foo` is `foo.`: the whole first label.
    assert texts((await ask(srv, "foo.example.org")).answer) == ["www.example.org. 3600 a 192.0.2.1"]
    assert (await ask(srv, "foox.example.org")).rcode() == dns.rcode.SERVFAIL  # not rewritten: hosts lacks it
    # substring `old` is `old.`, every occurrence.
    assert texts((await ask(srv, "old.example.org")).answer) == ["db.example.org. 3600 a 192.0.2.2"]
    # regex with a group, the answer rewritten back.
    assert texts((await ask(srv, "x-www.example.org")).answer) == ["x-www.example.org. 3600 a 192.0.2.1"]


async def test_a_stop_rule_ends_the_list(serve: Serve) -> None:
    srv = await serve(block("rewrite name exact a.example.org db.example.org",
                            "rewrite name exact db.example.org www.example.org"))
    assert texts((await ask(srv, "a.example.org")).answer) == ["a.example.org. 3600 a 192.0.2.2"]
    assert texts((await ask(srv, "db.example.org")).answer) == ["db.example.org. 3600 a 192.0.2.1"]


async def test_continue_chain_rewrites_the_answer_back_through_every_rule(serve: Serve) -> None:
    srv = await serve(block("rewrite continue name suffix .internal.example.org. .example.org. answer auto",
                            "rewrite name exact www.example.org db.example.org"))
    r = await ask(srv, "www.internal.example.org", use_edns=0)
    assert texts(r.answer) == ["www.internal.example.org. 3600 a 192.0.2.2"]
    # A name only the first rule matches.
    assert texts((await ask(srv, "db.internal.example.org")).answer) == ["db.internal.example.org. 3600 a 192.0.2.2"]


async def test_cname_and_srv_targets_are_rewritten_and_the_question_matches(serve: Serve,
                                                                           upstream: FakeUpstream) -> None:
    upstream.behaviour.custom = Answers({
        ("web.service.consul.", "A"): ["web.service.consul. 30 IN CNAME web-0.node.service.consul.",
                                       "web-0.node.service.consul. 30 IN A 192.0.2.20"],
        ("_http._tcp.web.service.consul.", "SRV"): [
            "_http._tcp.web.service.consul. 30 IN SRV 10 50 80 web-0.node.service.consul.",
            "_http._tcp.web.service.consul. 30 IN SRV 10 50 80 web-1.node.service.consul.",
            "+web-0.node.service.consul. 30 IN A 192.0.2.20", "+web-1.node.service.consul. 30 IN A 192.0.2.21"],
        ("mx.service.consul.", "MX"): ["mx.service.consul. 30 IN MX 10 mail.service.consul."],
    })
    srv = await serve(block("rewrite name suffix .corp.example. .service.consul. answer auto",
                            tail=f"    forward . {upstream.address}\n"))
    r = await ask(srv, "Web.Corp.Example", use_edns=0)
    assert [rs.name.to_text() for rs in r.answer][:1] == ["Web.Corp.Example."]
    assert texts(r.answer) == ["web-0.node.corp.example. 30 a 192.0.2.20",
                               "web.corp.example. 30 cname web-0.node.corp.example."]
    # dnspython raises when the question of an answer is not the one asked: SRV answers pass.
    r = await ask(srv, "_http._tcp.web.corp.example", "SRV")
    assert texts(r.answer) == ["_http._tcp.web.corp.example. 30 srv 10 50 80 web-0.node.corp.example.",
                               "_http._tcp.web.corp.example. 30 srv 10 50 80 web-1.node.corp.example."]
    assert texts(r.additional) == ["web-0.node.corp.example. 30 a 192.0.2.20",
                                   "web-1.node.corp.example. 30 a 192.0.2.21"]
    assert texts((await ask(srv, "mx.corp.example", "mx")).answer) == ["mx.corp.example. 30 mx 10 mail.corp.example."]
    # The upstream was asked the rewritten names.
    assert {q.question[0].name.to_text() for _, q in upstream.queries} == {
        "web.service.consul.", "_http._tcp.web.service.consul.", "mx.service.consul."}


async def test_answer_name_and_value_patterns(serve: Serve, upstream: FakeUpstream) -> None:
    upstream.behaviour.custom = Answers({
        ("ftp.service.us-west-1.consul.", "A"): [
            "ftp.service.us-west-1.consul. 30 IN CNAME web.service.us-west-1.consul.",
            "web.service.us-west-1.consul. 30 IN A 10.10.10.10"]})
    srv = await serve(block("rewrite stop {",
                            r"    name regex (.*)-(us-west-1)\.example\.org {1}.service.{2}.consul",
                            r"    answer name (.*)\.service\.(us-west-1)\.consul {1}-{2}.example.org",
                            r"    answer value (.*)\.service\.(us-west-1)\.consul {1}-{2}.example.org", "}",
                            tail=f"    forward . {upstream.address}\n"))
    r = await ask(srv, "ftp-us-west-1.example.org")
    assert texts(r.answer) == ["ftp-us-west-1.example.org. 30 cname web-us-west-1.example.org.",
                               "web-us-west-1.example.org. 30 a 10.10.10.10"]


async def test_without_answer_rewriting_the_answer_keeps_the_rewritten_names_under_the_clients_question(
        serve: Serve) -> None:
    srv = await serve(block("rewrite name prefix foo www"))
    r = await ask(srv, "foo.example.org")  # (dnspython checks the question)
    assert texts(r.answer) == ["www.example.org. 3600 a 192.0.2.1"]


async def test_continue_rules_alone_still_answer_the_clients_question(serve: Serve) -> None:
    # CoreDNS answers this with the rewritten question (AAAA asked, A in the question), which
    # clients refuse; interkube restores it (docs/divergences.md).
    srv = await serve(block("rewrite continue type AAAA A"))
    r = await ask(srv, "www.example.org", "AAAA")
    assert (r.question[0].name.to_text(), r.question[0].rdtype) == ("www.example.org.", dns.rdatatype.AAAA)
    assert texts(r.answer) == ["www.example.org. 3600 a 192.0.2.1"]


async def test_an_invalid_rewritten_name_is_servfail_and_logged(serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    srv = await serve(block("errors", r"rewrite name regex ^(.*)\.bad\.example\.org\.$ {1}..example.org",
                            "rewrite name exact long.example.org " + "x" * 64 + ".example.org"))
    with caplog.at_level(logging.ERROR, logger="interkube.plugin.errors"):
        for _ in range(2):  # the second time from the remembered plan
            r = await ask(srv, "www.bad.example.org")
            assert (r.rcode(), r.answer) == (dns.rcode.SERVFAIL, [])
        assert (await ask(srv, "long.example.org")).rcode() == dns.rcode.SERVFAIL
    assert "2 www.bad.example.org. A: invalid name after rewrite: www..example.org." in caplog.text
    assert f"invalid name after rewrite: {'x' * 64}.example.org." in caplog.text


# --- type, class, ttl, rcode --------------------------------------------------------------------


async def test_type_and_class(serve: Serve, upstream: FakeUpstream) -> None:
    upstream.behaviour.custom = Answers({("www.example.org.", "HINFO"): ['www.example.org. 30 IN HINFO "RFC8482" ""']})
    srv = await serve(block("rewrite type ANY HINFO", tail=f"    forward . {upstream.address}\n"))
    r = await ask(srv, "www.example.org", "ANY")
    assert r.question[0].rdtype == dns.rdatatype.ANY
    assert texts(r.answer) == ['www.example.org. 30 hinfo "rfc8482" ""']
    srv = await serve(block("rewrite class CH IN"))
    r = await ask(srv, "www.example.org", "A", rdclass="CH")
    assert r.question[0].rdclass == dns.rdataclass.CH
    assert texts(r.answer) == ["www.example.org. 3600 a 192.0.2.1"]


async def test_ttl_ranges(serve: Serve) -> None:
    srv = await serve(block("rewrite continue ttl db.example.org 30-300", "rewrite ttl suffix example.org. 7"))
    # Both rules match db.example.org; answers are rewritten last rule first: 3600 -> 7 -> 30.
    assert texts((await ask(srv, "db.example.org")).answer) == ["db.example.org. 30 a 192.0.2.2"]
    assert texts((await ask(srv, "www.example.org")).answer) == ["www.example.org. 7 a 192.0.2.1"]


async def test_rcode_of_answers_and_of_failures(serve: Serve) -> None:
    srv = await serve(block("rewrite rcode regex (.*)\\.example\\.org SERVFAIL NOERROR"))
    r = await ask(srv, "nope.example.org")  # hosts answers SERVFAIL for a name it has no address for
    assert (r.rcode(), r.answer) == (dns.rcode.NOERROR, [])
    with socket.socket() as s:  # a port nothing listens on: the upstream refuses at once
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    srv = await serve(block("rewrite rcode suffix example.org. SERVFAIL REFUSED",
                            tail=f"    forward . 127.0.0.1:{closed}\n"))
    assert (await ask(srv, "www.example.org")).rcode() == dns.rcode.REFUSED
    assert (await ask(srv, "www.example.com")).rcode() == dns.rcode.SERVFAIL  # no rule: the failure itself


# --- cname --------------------------------------------------------------------------------------


async def test_cname_rule_follows_the_new_target(serve: Serve, upstream: FakeUpstream) -> None:
    upstream.behaviour.custom = Answers({
        ("my-app.com.", "A"): ["my-app.com. 200 IN CNAME my-app.example.",
                               "my-app.example. 200 IN CNAME my-app.com.cdn.example.net.",
                               "my-app.com.cdn.example.net. 300 IN A 20.2.0.1"],
        ("my-app.com.other.cdn.com.", "A"): ["my-app.com.other.cdn.com. 100 IN A 30.3.1.2"]})
    srv = await serve(block(r"rewrite cname regex (.*)\.cdn\.example\.net\. {1}.other.cdn.com.",
                            tail=f"    forward . {upstream.address}\n"))
    r = await ask(srv, "my-app.com")
    assert [f"{rs.name} {dns.rdatatype.to_text(rs.rdtype)} {rs[0]}" for rs in r.answer] == [
        "my-app.com. CNAME my-app.example.", "my-app.example. CNAME my-app.com.other.cdn.com.",
        "my-app.com.other.cdn.com. A 30.3.1.2"]


async def test_cname_rule_lookup_from_memory_stays_on_the_fast_path(serve: Serve,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    srv = await serve(block("rewrite cname exact old.example.org. www.example.org.",
                            tail="    template IN A example.org {\n        match ^app\\.example\\.org\\.$\n"
                                 "        answer \"app.example.org. 60 IN CNAME old.example.org.\"\n"
                                 "        fallthrough\n    }\n" + HOSTS))
    r = await ask(srv, "app.example.org")
    assert texts(r.answer) == ["app.example.org. 60 cname www.example.org.", "www.example.org. 3600 a 192.0.2.1"]
    # (an answer built with a lookup is built for each query: within the fast path's budget for
    # building, here a fresh one)
    monkeypatch.setattr(rewrite_handler, "INLINE_BUILDS", InlineBuilds())
    answer = fast(srv, dns.message.make_query("app.example.org", "A").to_wire())
    assert answer is not None
    assert texts(dns.message.from_wire(answer).answer) == texts(r.answer)


# --- edns0 ---------------------------------------------------------------------------------------


def options(msg: dns.message.Message) -> list[tuple[int, bytes]]:
    return [(int(o.otype), o.to_wire()) for o in msg.options]


async def test_edns0_local_rules_reach_the_upstream(serve: Serve, upstream: FakeUpstream) -> None:
    upstream.behaviour.records = {("www.example.org.", "A"): ["192.0.2.1"]}
    srv = await serve(block("rewrite continue edns0 local set 0xffee 0x61626364",
                            "rewrite continue edns0 local set 0xffe1 {qname}",
                            "rewrite continue edns0 local set 0xffe2 {qtype}",
                            "rewrite continue edns0 local set 0xffe3 {client_ip}",
                            "rewrite continue edns0 local set 0xffe4 {protocol}",
                            "rewrite continue edns0 local set 0xffe5 {server_ip}",
                            "rewrite continue edns0 local set 0xffe6 {server_port}",
                            "rewrite continue edns0 local append 0xffe7 x",
                            "rewrite continue edns0 local unset 0xfff0",
                            "rewrite edns0 local replace 0xfff1 gone",
                            tail=f"    forward . {upstream.address}\n"))
    r = await ask(srv, "WwW.example.org", use_edns=0, options=[dns.edns.GenericOption(0xFFF0, b"client")])
    assert texts(r.answer) == ["www.example.org. 30 a 192.0.2.1"]
    assert options(r) == []  # a forwarded answer keeps the upstream's options (none)
    sent = upstream.queries[-1][1]
    assert options(sent) == [(0xFFEE, b"abcd"), (0xFFE1, b"WwW.example.org."), (0xFFE2, b"\x00\x01"),
                             (0xFFE3, bytes([127, 0, 0, 1])), (0xFFE4, b"udp"), (0xFFE5, bytes([127, 0, 0, 1])),
                             (0xFFE6, struct.pack("!H", srv.port)), (0xFFE7, b"x")]
    # A query without EDNS gets an OPT record of 4096 bytes, as in CoreDNS.
    await ask(srv, "www.example.org")
    assert upstream.queries[-1][1].payload == 4096


async def test_edns0_subnet_and_nsid(serve: Serve, upstream: FakeUpstream) -> None:
    upstream.behaviour.records = {("www.example.org.", "A"): ["192.0.2.1"]}
    srv = await serve(block("rewrite continue edns0 subnet set 24 56", "rewrite edns0 nsid set",
                            tail=f"    forward . {upstream.address}\n"))
    await ask(srv, "www.example.org", use_edns=0)
    sent = upstream.queries[-1][1]
    ecs = [o for o in sent.options if isinstance(o, dns.edns.ECSOption)]
    assert [(o.address, o.srclen, o.scopelen) for o in ecs] == [("127.0.0.0", 24, 0)]
    assert (3, b"") in options(sent)


async def test_local_options_set_are_in_answers_from_memory_unless_reverted(serve: Serve) -> None:
    srv = await serve(block("rewrite edns0 local set 0xffee abcd"))
    assert options(await ask(srv, "www.example.org", use_edns=0)) == [(0xFFEE, b"abcd")]
    srv = await serve(block("rewrite edns0 local set 0xffee abcd revert"))
    assert options(await ask(srv, "www.example.org", use_edns=0)) == []
    srv = await serve(block("rewrite continue {", "    edns0 local set 0xffee abcd", "}",
                            "rewrite edns0 local replace 0xffee bcde revert"))
    assert options(await ask(srv, "www.example.org", use_edns=0)) == [(0xFFEE, b"abcd")]


async def test_edns0_blocks_are_asked_afresh_for_every_query(serve: Serve, upstream: FakeUpstream) -> None:
    upstream.behaviour.records = {("www.example.org.", "A"): ["192.0.2.1"]}
    srv = await serve(block("rewrite edns0 local set 0xffee {client_port}", tail=f"    forward . {upstream.address}\n"))
    seen = set()
    for _ in range(3):  # each from another socket
        await ask(srv, "www.example.org", use_edns=0)
        seen.add(options(upstream.queries[-1][1])[0][1])
    assert len(seen) == 3


# --- the fast path and the memo ------------------------------------------------------------------


async def test_rewritten_questions_are_answered_on_the_fast_path_from_a_kept_answer(
        serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    srv = await serve(block(*(f"rewrite continue name exact n{i}.example.org www.example.org" for i in range(9)),
                            r"rewrite name regex ^a-(.*)\.$ {1} answer auto"))
    calls: list[str] = []
    real = rewrite_handler.transform

    def counted(*args: Any, **kw: Any) -> Any:
        calls.append("transform")
        return real(*args, **kw)

    monkeypatch.setattr(rewrite_handler, "transform", counted)
    assert texts((await ask(srv, "a-db.example.org")).answer) == ["a-db.example.org. 3600 a 192.0.2.2"]
    assert calls == ["transform"]
    wires = [dns.message.make_query(name, "A", id=i).to_wire()
             for i, name in enumerate(("a-db.example.org", "A-DB.example.ORG", "a-db.EXAMPLE.org") * 3)]
    answers = [fast(srv, wire) for wire in wires]
    assert calls == ["transform"]  # every later one from the kept answer
    for wire, answer in zip(wires, answers, strict=True):
        assert answer is not None  # the fast path answered
        q, a = dns.message.from_wire(wire), dns.message.from_wire(answer)
        assert a.id == q.id and a.question == q.question
        assert [rs.name.to_text() for rs in a.answer] == [q.question[0].name.to_text()]
        assert texts(a.answer) == [f"{q.question[0].name} 3600 a 192.0.2.2".lower()]
    # A question no rule matches costs no plan or transform beyond the first lookup.
    await ask(srv, "www.example.org")
    assert fast(srv, dns.message.make_query("www.example.org", "A").to_wire()) is not None
    assert calls == ["transform"]


async def test_edns0_blocks_keep_answers_per_query_bytes_and_rewritten_query(
        serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    srv = await serve(block("rewrite edns0 local set 0xffee {client_ip}"))
    calls: list[str] = []
    real = rewrite_handler.transform
    monkeypatch.setattr(rewrite_handler, "transform", lambda *a, **k: calls.append("t") or real(*a, **k))
    r = await ask(srv, "www.example.org", use_edns=0)
    assert options(r) == [(0xFFEE, bytes([127, 0, 0, 1]))]
    for qid in range(5):
        answer = fast(srv, dns.message.make_query("www.example.org", "A", use_edns=0, id=qid).to_wire())
        assert answer is not None and options(dns.message.from_wire(answer)) == [(0xFFEE, bytes([127, 0, 0, 1]))]
    assert calls == ["t"]


async def test_a_forwarded_answer_that_repeats_is_rewritten_once(serve: Serve, upstream: FakeUpstream,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    upstream.behaviour.records = {("www.example.org.", "A"): ["192.0.2.1"]}
    srv = await serve(block("rewrite name suffix .alias.test. .example.org. answer auto",
                            tail=f"    forward . {upstream.address}\n"))
    calls: list[str] = []
    real = rewrite_handler.transform
    monkeypatch.setattr(rewrite_handler, "transform", lambda *a, **k: calls.append("t") or real(*a, **k))
    for name in ("www.alias.test", "WWW.Alias.Test", "www.alias.test"):
        r = await ask(srv, name)
        assert [rs.name.to_text() for rs in r.answer] == [f"{name}."]
    assert (len(upstream.queries), calls) == (3, ["t"])


async def test_behind_cache_the_kept_answer_follows_the_ttls(serve: Serve, upstream: FakeUpstream,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    upstream.behaviour.records = {("www.example.org.", "A"): ["192.0.2.1"]}
    upstream.behaviour.ttl = 300
    srv = await serve(block("rewrite name suffix .alias.test. .example.org. answer auto",
                            "rewrite continue ttl suffix alias.test. 0-250", "cache",
                            tail=f"    forward . {upstream.address}\n"))
    cache = srv.handler("cache")
    now = [1000.0]
    cache.clock = lambda: now[0]
    assert texts((await ask(srv, "www.alias.test")).answer) == ["www.alias.test. 300 a 192.0.2.1"]
    # The first answer from the cache itself differs from the fetched one (AA cleared): rewritten once.
    assert fast(srv, dns.message.make_query("www.alias.test", "A").to_wire()) is not None
    calls: list[str] = []
    real = rewrite_handler.transform
    monkeypatch.setattr(rewrite_handler, "transform", lambda *a, **k: calls.append("t") or real(*a, **k))
    # Two names rewritten into one share the cache entry; the upstream was asked once.
    for name, ttl in (("www.alias.test", 300), ("WWW.alias.test", 300)):
        answer = fast(srv, dns.message.make_query(name, "A").to_wire())
        assert answer is not None
        assert texts(dns.message.from_wire(answer).answer) == [f"{name.lower()}. {ttl} a 192.0.2.1"]
    now[0] += 2  # the cache counts down: the kept answer gets the new TTL, no transform
    answer = fast(srv, dns.message.make_query("www.alias.test", "A").to_wire())
    assert answer is not None and texts(dns.message.from_wire(answer).answer) == ["www.alias.test. 298 a 192.0.2.1"]
    assert calls == []
    assert len(upstream.queries) == 1


async def test_rewrite_in_front_of_kubernetes(serve: Serve, tmp_path: Path) -> None:
    snapshot = write_snapshot(tmp_path / "cluster.yaml", [
        service("default", "foo", cluster_ips=["10.96.0.40"], ports=[("http", 80, "TCP")])])
    srv = await serve(block("rewrite name foo.example.com foo.default.svc.cluster.local",
                            "rewrite name suffix .example.net. .default.svc.cluster.local. answer auto",
                            tail=f"    kubernetes cluster.local {{\n        snapshot {snapshot}\n    }}\n"))
    r = await ask(srv, "Foo.Example.Com", use_edns=0)
    assert [rs.name.to_text() for rs in r.answer] == ["Foo.Example.Com."]
    assert texts(r.answer) == ["foo.example.com. 5 a 10.96.0.40"]
    r = await ask(srv, "_http._tcp.foo.example.net", "SRV")
    assert texts(r.answer) == ["_http._tcp.foo.example.net. 5 srv 0 100 80 foo.example.net."]
    assert texts(r.additional) == ["foo.example.net. 5 a 10.96.0.40"]
    assert fast(srv, dns.message.make_query("foo.example.com", "A", use_edns=0).to_wire()) is not None


async def test_unmatched_questions_pass_untouched_on_both_paths(serve: Serve, upstream: FakeUpstream) -> None:
    upstream.behaviour.records = {("Mixed.Example.Net.".lower(), "A"): ["192.0.2.9"]}
    srv = await serve(block("rewrite name exact foo.example.org www.example.org",
                            tail=f"    forward . {upstream.address}\n"))
    r = await ask(srv, "Mixed.Example.Net", use_edns=0)
    assert [rs.name.to_text() for rs in r.answer] == ["Mixed.Example.Net."]
    # The upstream got the client's query, letters and all.
    assert upstream.queries[-1][1].question[0].name.to_text() == "Mixed.Example.Net."


async def test_queries_in_flight_each_get_their_own_answer(serve: Serve, upstream: FakeUpstream) -> None:
    upstream.behaviour.records = {(f"h{i}.example.org.", "A"): [f"192.0.2.{i}"] for i in range(1, 21)}
    upstream.behaviour.delay = 0.05
    srv = await serve(block(r"rewrite name regex ^a(\d+)\.example\.org\.$ h{1}.example.org answer auto",
                            tail=f"    forward . {upstream.address}\n"))
    answers = await asyncio.gather(*(ask(srv, f"a{i}.example.org") for i in range(1, 21)))
    assert [texts(r.answer) for r in answers] == [[f"a{i}.example.org. 30 a 192.0.2.{i}"] for i in range(1, 21)]


async def test_a_kept_answer_follows_the_data_of_the_plugin_behind(serve: Serve, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from interkube.kube import snapshot as kube_snapshot

    monkeypatch.setattr(kube_snapshot, "CHECK_INTERVAL", 0.05)
    path = tmp_path / "cluster.yaml"
    write_snapshot(path, [service("default", "foo", cluster_ips=["10.96.0.40"])])
    srv = await serve(block("rewrite name foo.example.com foo.default.svc.cluster.local",
                            tail=f"    kubernetes cluster.local {{\n        snapshot {path}\n    }}\n"))
    wire = dns.message.make_query("foo.example.com", "A").to_wire()
    assert texts((await ask(srv, "foo.example.com")).answer) == ["foo.example.com. 5 a 10.96.0.40"]
    assert fast(srv, wire) is not None  # answered from the kept answer
    write_snapshot(path, [service("default", "foo", cluster_ips=["10.96.0.41"])])

    def moved() -> bool:
        answer = fast(srv, wire)
        return answer is not None and texts(dns.message.from_wire(answer).answer) == ["foo.example.com. 5 a 10.96.0.41"]

    await until(moved, "the rewritten name answered with the Service's new address")

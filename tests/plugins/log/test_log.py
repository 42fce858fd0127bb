"""log: parsing as CoreDNS reads it, one handler per server block, classes, sizes and the
placeholders of interkube's own; the lines themselves are compared with CoreDNS's in
test_log_vs_coredns.py."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rrset
import pytest

from interkube.corefile.parser import parse_text
from interkube.errors import ConfigError
from interkube.pkg.framing import frame
from interkube.plugin.services import Services
from interkube.plugins.log.parse import COMBINED, COMMON, LogConfig, Rule, parse
from interkube.server.runtime import build
from testkit.corefile import directive
from testkit.fakeupstream import Behaviour, FakeUpstream
from testkit.servers import LOOPBACK, read_frame

Serve = Callable[[str], Awaitable[Any]]  # the `serve` fixture (tests/plugins/conftest.py)
ALL = frozenset({"all"})


def parsed(line: str) -> LogConfig:
    return parse(directive(line))


@pytest.mark.parametrize(("line", "rules"), [
    ("log", (Rule(".", COMMON, ALL),)),
    ("log Example.ORG", (Rule("example.org.", COMMON, ALL),)),
    # With more than one argument the last is the format only if it holds a placeholder.
    ("log a.example b.example", (Rule("a.example.", COMMON, ALL), Rule("b.example.", COMMON, ALL))),
    ('log a.example "{name} {rcode}"', (Rule("a.example.", "{name} {rcode}", ALL),)),
    ("log . {combined}", (Rule(".", COMBINED, ALL),)),
    ('log . "{common} {zone}"', (Rule(".", COMMON + " {zone}", ALL),)),
    ("log . {\n class denial error\n }", (Rule(".", COMMON, frozenset({"denial", "error"})),)),
    ("log a.example b.example {\n class success\n class denial\n }",
     (Rule("a.example.", COMMON, frozenset({"success", "denial"})),
      Rule("b.example.", COMMON, frozenset({"success", "denial"})))),
])
def test_parse(line: str, rules: tuple[Rule, ...]) -> None:
    assert parsed(line).rules == rules


@pytest.mark.parametrize(("line", "message"), [
    ("log {\n class failure\n }", "unknown class 'failure'"),
    ("log {\n class\n }", "at least 1"),
    ("log {\n format {name}\n }", "unknown option"),
])
def test_parse_errors(line: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parsed(line)


def test_every_log_directive_of_a_block_feeds_one_handler() -> None:
    """CoreDNS gathers them into one plugin (the first rule whose name matches decides), so a
    query is never logged twice."""
    core = ". {\n log a.example b.example\n log c.example {\n class error\n }\n log\n}\n"
    built = build(parse_text(core), "Corefile", Services())
    [handler] = [h for h in built.handlers if h.plugin == "log"]
    assert [r.classes for r in handler.rules] == [ALL, ALL, frozenset({"error"}), ALL]  # type: ignore[attr-defined]


def upstream_answer(query: dns.message.Message) -> dns.message.Message:
    """An answer for ``KIND.<anything>``: one of each shape CoreDNS tells apart when it
    classifies an answer (response.Typify), whatever the question."""
    q = query.question[0]
    kind = q.name.labels[0].decode()
    resp = dns.message.make_response(query)
    resp.flags |= dns.flags.RA
    zone = dns.name.from_text("up.test.")
    soa = dns.rrset.from_text(zone, 60, "IN", "SOA", "ns.up.test. admin.up.test. 1 7200 3600 1209600 60")
    a = dns.rrset.from_text(q.name, 60, "IN", "A", "192.0.2.80")
    if kind == "answer":
        resp.answer.append(a)
    elif kind in ("expired", "valid"):
        resp.answer.append(a)
        dates = "20200101000000 20191201000000" if kind == "expired" else "20991231000000 20200101000000"
        resp.answer.append(dns.rrset.from_text(q.name, 60, "IN", "RRSIG", f"A 8 4 60 {dates} 1 up.test. AAAA"))
    elif kind == "cname-nx":
        resp.answer.append(dns.rrset.from_text(q.name, 60, "IN", "CNAME", "gone.up.test."))
        resp.authority.append(soa)
        resp.set_rcode(dns.rcode.NXDOMAIN)
    elif kind == "nodata":
        resp.authority.append(soa)
    elif kind == "delegation":
        resp.authority.append(dns.rrset.from_text(q.name, 60, "IN", "NS", "ns.elsewhere.test."))
    elif kind == "nx":
        resp.authority.append(soa)
        resp.set_rcode(dns.rcode.NXDOMAIN)
    elif kind in RCODES:
        resp.set_rcode(RCODES[kind])
    return resp  # "empty": NOERROR, no records at all


RCODES = {"servfail": 2, "notimp": 4, "refused": 5, "yxdomain": 6, "notzone": 10, "twelve": 12}
#: The class CoreDNS gives each kind of answer, asked with DO (which makes signatures count).
CLASS_OF = {"answer": "success", "valid": "success", "delegation": "success", "empty": "success",
            "nodata": "denial", "nx": "denial", "expired": "error", "cname-nx": "error",
            **{kind: "error" for kind in RCODES}}


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    up = await FakeUpstream().start()
    up.behaviour = Behaviour(custom=upstream_answer)
    yield up
    await up.stop()


def query_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "interkube.query"]


async def test_each_class_logs_only_its_answers(serve: Serve, upstream: FakeUpstream,
                                                interkube_caplog: pytest.LogCaptureFixture) -> None:
    rules = "\n".join(f" log {cls}.up.test {{name}} {{\n  class {cls}\n }}" for cls in ("success", "denial", "error"))
    running = await serve(f"up.test:PORT {{\n bind {LOOPBACK}\n{rules}\n log . \"{{name}} unfiltered\"\n"
                          f" forward . {upstream.address}\n}}\n")
    for kind in CLASS_OF:
        for cls in ("success", "denial", "error"):
            await running.query(f"{kind}.{cls}.up.test", use_edns=0, want_dnssec=True)
    await running.query("expired.success.up.test")  # without DO, signatures are not looked at
    await running.query("other.up.test")  # no class rule: the catch-all logs it
    logged = {line.split()[0].rstrip(".") for line in query_lines(interkube_caplog)}
    expected = {f"{kind}.{cls}.up.test" for kind, cls in CLASS_OF.items()}
    assert logged == expected | {"expired.success.up.test", "other.up.test"}


async def tcp_exchange(port: int, wire: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        writer.write(frame(wire))
        await writer.drain()
        return await read_frame(reader)
    finally:
        writer.close()


async def test_rsize_is_the_answer_before_truncation_and_tc_is_shown(
        serve: Serve, tmp_path: Any, interkube_caplog: pytest.LogCaptureFixture) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("".join(f"198.51.100.{i} big.example.org\n" for i in range(1, 61)) + "192.0.2.1 www.example.org\n")
    running = await serve(f"example.org:PORT {{\n bind {LOOPBACK}\n log . \"{{>id}} {{rsize}} {{>rflags}}\"\n"
                          f" hosts {hosts}\n}}\n")
    small = dns.message.make_query("www.example.org", "A", use_edns=0)
    small.id = 1
    small_answer = await running.raw(small.to_wire())
    big = dns.message.make_query("big.example.org", "A")
    big.id = 2
    sent = await running.raw(big.to_wire())
    big.id = 3
    whole = await tcp_exchange(running.port, big.to_wire())
    assert dns.message.from_wire(sent).flags & dns.flags.TC and len(sent) <= 512 < len(whole)
    assert query_lines(interkube_caplog) == [f"1 {len(small_answer)} qr,aa,rd", f"2 {len(whole)} qr,aa,tc,rd",
                                             f"3 {len(whole)} qr,aa,rd"]


async def test_placeholders_of_interkube_and_of_the_listener(serve: Serve, tmp_path: Any,
                                                             interkube_caplog: pytest.LogCaptureFixture) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.1 www.example.org\n")
    running = await serve(f"example.org:PORT {{\n bind {LOOPBACK}\n"
                          f" log . \"{{zone}} {{server}} {{local}} {{name}} {{type}} {{class}} {{>opcode}} {{what}}\"\n"
                          f" hosts {hosts}\n}}\n")
    await running.query("WWW.example.ORG", "A")
    await running.query("www.example.org", 34)   # miekg's names, which CoreDNS prints, not dnspython's
    await running.query("www.example.org", 11)
    await running.query("www.example.org", "A", rdclass=2)
    server = f"dns://{LOOPBACK}:{running.port}"
    assert query_lines(interkube_caplog) == [
        f"example.org. {server} {LOOPBACK} www.example.org. A IN 0 {{what}}",
        f"example.org. {server} {LOOPBACK} www.example.org. ATMA IN 0 {{what}}",
        f"example.org. {server} {LOOPBACK} www.example.org. TYPE11 IN 0 {{what}}",
        f"example.org. {server} {LOOPBACK} www.example.org. A CS 0 {{what}}",
    ]


async def nothing_comes_back_from(source: str, port: int, wire: bytes, tcp: bool) -> bool:
    """Send ``wire`` from ``source`` and wait a moment for an answer that should not come."""
    loop = asyncio.get_running_loop()
    if tcp:
        reader, writer = await asyncio.open_connection(LOOPBACK, port, local_addr=(source, 0))
        try:
            writer.write(frame(wire))
            await writer.drain()
            await asyncio.wait_for(reader.readexactly(2), 0.5)
            return False
        except TimeoutError:
            return True
        finally:
            writer.close()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.setblocking(False)
        await loop.sock_sendto(sock, wire, (LOOPBACK, port))
        try:
            await asyncio.wait_for(loop.sock_recv(sock, 65535), 0.5)
            return False
        except TimeoutError:
            return True


async def test_a_dropped_query_is_logged_and_stays_dropped(serve: Serve, tmp_path: Any,
                                                           interkube_caplog: pytest.LogCaptureFixture) -> None:
    """acl's drop sends nothing; log writes `-` for what there is not, as CoreDNS does (it used to
    fail on the empty answer, and the failure was answered with SERVFAIL)."""
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.1 www.example.org\n")
    running = await serve(f"example.org:PORT {{\n bind {LOOPBACK}\n"
                          ' log . "{remote} {rcode} {>rflags} {rsize}"\n'
                          f" acl {{\n  drop net 127.0.0.3\n }}\n hosts {hosts}\n}}\n")
    wire = dns.message.make_query("www.example.org", "A").to_wire()
    assert await nothing_comes_back_from("127.0.0.3", running.port, wire, tcp=False)
    assert await nothing_comes_back_from("127.0.0.3", running.port, wire, tcp=True)
    assert query_lines(interkube_caplog) == ["127.0.0.3 - - 0", "127.0.0.3 - - 0"]



def test_type_class_and_rcode_names_are_those_coredns_prints() -> None:
    """miekg/dns's names (interkube.dns.mnemonics), where dnspython's differ: ATMA, not TYPE34;
    TYPE11, not WKS; CS for class 2."""
    from interkube.dns.mnemonics import class_text, rcode_text, type_text

    assert [type_text(t) for t in (1, 0, 11, 22, 34, 38, 65, 262, 65280, 65535)] == [
        "A", "None", "TYPE11", "TYPE22", "ATMA", "TYPE38", "HTTPS", "TYPE262", "TYPE65280", "Reserved"]
    assert [class_text(c) for c in (1, 2, 3, 4, 254, 255, 1000)] == ["IN", "CS", "CH", "HS", "NONE", "ANY", "CLASS1000"]
    assert [rcode_text(r) for r in (0, 2, 3, 5, 11, 12, 15)] == ["NOERROR", "SERVFAIL", "NXDOMAIN", "REFUSED",
                                                                 "DSOTYPENI", "12", "15"]

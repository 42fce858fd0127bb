"""file answering through real sockets: every rule of CoreDNS's plugin/file lookup, and reload."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest

from interkube.server.main import default_dir
from testkit.dig import dig, needs_dig
from testkit.servers import free_port, interkube_process
from testkit.waiting import until

Serve = Callable[[str], Awaitable[Any]]  # the `serve` fixture (conftest.py)

SOA = "example.org. 300 in soa ns1.example.org. hostmaster.example.org. {serial} 7200 3600 1209600 300"
NS = ["example.org. 300 in ns ns.external.net.", "example.org. 300 in ns ns1.example.org.",
      "example.org. 300 in ns ns2.example.org."]

ZONE = """\
$TTL 300
@         IN SOA   ns1.example.org. hostmaster.example.org. {serial} 7200 3600 1209600 300
@         IN NS    ns1.example.org.
@         IN NS    ns2.example.org.
@         IN NS    ns.external.net.
@         IN MX    10 mail.example.org.
@         IN MX    20 mx.external.net.
@         IN TXT   "v=spf1 -all"
ns1       IN A     192.0.2.1
ns2       IN AAAA  2001:db8::2
www       IN A     192.0.2.10
www       IN AAAA  2001:db8::10
mail      IN A     192.0.2.25
alias     IN CNAME www
chain1    IN CNAME chain2
chain2    IN CNAME www
ext       IN CNAME www.external.net.
loop1     IN CNAME loop2
loop2     IN CNAME loop1
_sip._tcp IN SRV   0 5 5060 sip.example.org.
_sip._tcp IN SRV   10 5 5060 sip.external.net.
sip       IN A     192.0.2.50
sip       IN AAAA  2001:db8::50
ptr       IN PTR   www.example.org.
a.b.ent   IN A     192.0.2.60
*.wild    IN A     192.0.2.70
*.wild    IN TXT   "wildcard"
*.cw      IN CNAME www
sub       IN NS    ns.sub.example.org.
sub       IN NS    ns.elsewhere.net.
ns.sub    IN A     192.0.2.53
old       IN DNAME new.example.org.
www.new   IN A     192.0.2.80
{extra}"""

# c0 -> c1 -> ... -> c11 -> www: longer than CoreDNS follows.
LONG_CHAIN = "".join(f"c{i} IN CNAME c{i + 1}\n" for i in range(11)) + "c11 IN CNAME www\n"


def texts(rrsets: list[dns.rrset.RRset]) -> list[str]:
    """Each record as `name ttl class type rdata`, lower case, sorted: order is not meaning."""
    return sorted(line.lower() for rrset in rrsets for line in rrset.to_text().splitlines())


def write_zone(path: Path, serial: int = 2024010101, extra: str = "") -> Path:
    path.write_text(ZONE.format(serial=serial, extra=extra))
    return path


@pytest.fixture
def zone(tmp_path: Path) -> Path:
    return write_zone(tmp_path / "db.example.org", extra=LONG_CHAIN)


@pytest.fixture
async def srv(serve: Serve, zone: Path) -> Any:
    return await serve(f"example.org:PORT {{\n file {zone}\n}}")


NXDOMAIN, NOERROR = dns.rcode.NXDOMAIN, dns.rcode.NOERROR
SOA_AUTH = [SOA.format(serial=2024010101)]

# name, type -> rcode, AA, answer, authority, additional (records as `texts` prints them)
CASES: dict[tuple[str, str], tuple[int, bool, list[str], list[str], list[str]]] = {
    ("example.org", "SOA"): (NOERROR, True, SOA_AUTH, NS, []),
    ("example.org", "NS"): (NOERROR, True, NS, [], [
        "ns1.example.org. 300 in a 192.0.2.1", "ns2.example.org. 300 in aaaa 2001:db8::2"]),
    ("www.example.org", "A"): (NOERROR, True, ["www.example.org. 300 in a 192.0.2.10"], NS, []),
    ("www.example.org", "AAAA"): (NOERROR, True, ["www.example.org. 300 in aaaa 2001:db8::10"], NS, []),
    ("example.org", "TXT"): (NOERROR, True, ['example.org. 300 in txt "v=spf1 -all"'], NS, []),
    ("ptr.example.org", "PTR"): (NOERROR, True, ["ptr.example.org. 300 in ptr www.example.org."], NS, []),
    ("example.org", "MX"): (NOERROR, True, [
        "example.org. 300 in mx 10 mail.example.org.", "example.org. 300 in mx 20 mx.external.net."],
        NS, ["mail.example.org. 300 in a 192.0.2.25"]),
    ("_sip._tcp.example.org", "SRV"): (NOERROR, True, [
        "_sip._tcp.example.org. 300 in srv 0 5 5060 sip.example.org.",
        "_sip._tcp.example.org. 300 in srv 10 5 5060 sip.external.net."],
        NS, ["sip.example.org. 300 in a 192.0.2.50", "sip.example.org. 300 in aaaa 2001:db8::50"]),
    # NODATA: the name exists without the type.
    ("www.example.org", "TXT"): (NOERROR, True, [], SOA_AUTH, []),
    ("www.example.org", "SOA"): (NOERROR, True, [], SOA_AUTH, []),
    ("mail.example.org", "AAAA"): (NOERROR, True, [], SOA_AUTH, []),
    # Empty non-terminals.
    ("b.ent.example.org", "A"): (NOERROR, True, [], SOA_AUTH, []),
    ("ent.example.org", "A"): (NOERROR, True, [], SOA_AUTH, []),
    # NXDOMAIN, including below an empty non-terminal.
    ("absent.example.org", "A"): (NXDOMAIN, True, [], SOA_AUTH, []),
    ("c.b.ent.example.org", "A"): (NXDOMAIN, True, [], SOA_AUTH, []),
    ("www.www.example.org", "A"): (NXDOMAIN, True, [], SOA_AUTH, []),
    # CNAME: followed inside the zone, not outside; asking for the CNAME itself stops there.
    ("alias.example.org", "A"): (NOERROR, True, [
        "alias.example.org. 300 in cname www.example.org.", "www.example.org. 300 in a 192.0.2.10"], NS, []),
    ("alias.example.org", "CNAME"): (NOERROR, True, ["alias.example.org. 300 in cname www.example.org."], NS, []),
    ("alias.example.org", "TXT"): (NOERROR, True, ["alias.example.org. 300 in cname www.example.org."], NS, []),
    ("chain1.example.org", "AAAA"): (NOERROR, True, [
        "chain1.example.org. 300 in cname chain2.example.org.",
        "chain2.example.org. 300 in cname www.example.org.",
        "www.example.org. 300 in aaaa 2001:db8::10"], NS, []),
    ("ext.example.org", "A"): (NOERROR, True, ["ext.example.org. 300 in cname www.external.net."], NS, []),
    ("loop1.example.org", "A"): (NOERROR, True, [
        "loop1.example.org. 300 in cname loop2.example.org.",
        "loop2.example.org. 300 in cname loop1.example.org."], NS, []),
    # At most ten CNAMEs (CoreDNS's maxChain of 8 lets through the first and nine more).
    ("c0.example.org", "A"): (NOERROR, True, [
        f"c{i}.example.org. 300 in cname c{i + 1}.example.org." for i in range(10)], NS, []),
    # DNAME: the DNAME, the CNAME made from it, and what that CNAME leads to in the zone.
    ("www.old.example.org", "A"): (NOERROR, True, [
        "old.example.org. 300 in dname new.example.org.",
        "www.old.example.org. 300 in cname www.new.example.org.",
        "www.new.example.org. 300 in a 192.0.2.80"], NS, []),
    # Wildcards: the question's name as owner; below the closest encloser only.
    ("x.wild.example.org", "A"): (NOERROR, True, ["x.wild.example.org. 300 in a 192.0.2.70"], NS, []),
    ("y.x.wild.example.org", "TXT"): (NOERROR, True, ['y.x.wild.example.org. 300 in txt "wildcard"'], NS, []),
    ("x.wild.example.org", "MX"): (NOERROR, True, [], SOA_AUTH, []),
    ("x.cw.example.org", "A"): (NOERROR, True, [
        "x.cw.example.org. 300 in cname www.example.org.", "www.example.org. 300 in a 192.0.2.10"], NS, []),
    # Delegation: a referral, not authoritative, with glue from below the cut only.
    ("www.sub.example.org", "A"): (NOERROR, False, [], [
        "sub.example.org. 300 in ns ns.elsewhere.net.", "sub.example.org. 300 in ns ns.sub.example.org."],
        ["ns.sub.example.org. 300 in a 192.0.2.53"]),
    ("sub.example.org", "NS"): (NOERROR, False, [], [
        "sub.example.org. 300 in ns ns.elsewhere.net.", "sub.example.org. 300 in ns ns.sub.example.org."],
        ["ns.sub.example.org. 300 in a 192.0.2.53"]),
    ("sub.example.org", "DS"): (NOERROR, True, [], SOA_AUTH, []),  # the parent side of the cut
}


@pytest.mark.parametrize("question", list(CASES), ids=[f"{n}/{t}" for n, t in CASES])
async def test_lookup_rules(srv: Any, question: tuple[str, str]) -> None:
    rcode, aa, answer, authority, additional = CASES[question]
    r = await srv.query(*question)
    assert dns.rcode.to_text(r.rcode()) == dns.rcode.to_text(rcode)
    assert bool(r.flags & dns.flags.AA) is aa
    assert texts(r.answer) == sorted(answer)
    assert texts(r.authority) == sorted(authority)
    assert texts(r.additional) == sorted(additional)


async def test_a_chain_is_answered_in_order(srv: Any) -> None:
    r = await srv.query("www.old.example.org", "A")
    assert [rrset.name.to_text() for rrset in r.answer] == [
        "old.example.org.", "www.old.example.org.", "www.new.example.org."]
    r = await srv.query("c0.example.org", "A")
    assert [rrset.name.to_text() for rrset in r.answer] == [f"c{i}.example.org." for i in range(10)]


async def test_zone_with_only_soa_and_ns_answers_nodata_at_the_apex(serve: Serve, tmp_path: Path) -> None:
    db = tmp_path / "db"
    db.write_text("$TTL 60\n@ SOA ns. host. 1 2 3 4 5\n@ NS ns.example.net.\n")
    srv = await serve(f"example.org:PORT {{\n file {db}\n}}")
    r = await srv.query("example.org", "A")
    assert (r.rcode(), r.answer, len(r.authority)) == (NOERROR, [], 1)
    assert (await srv.query("x.example.org", "A")).rcode() == NXDOMAIN


async def test_case_is_echoed(srv: Any) -> None:
    r = await srv.query("WwW.ExAmple.ORG", "A")
    assert r.question[0].name.labels == (b"WwW", b"ExAmple", b"ORG", b"")
    assert r.answer[0].name.labels == (b"WwW", b"ExAmple", b"ORG", b"")
    w = await srv.query("X.Wild.Example.Org", "A")
    assert w.answer[0].name.labels[:2] == (b"X", b"Wild")


async def test_names_outside_the_zones_pass_and_the_last_file_refuses(
        serve: Serve, zone: Path, tmp_path: Path) -> None:
    other = tmp_path / "db.net"
    other.write_text("$TTL 60\n@ SOA ns. host. 1 2 3 4 5\nwww IN A 198.51.100.9\n")
    srv = await serve(f""".:PORT {{
        file {zone} example.org
        file {other} example.net
    }}""")
    assert texts((await srv.query("www.example.net", "A")).answer) == ["www.example.net. 60 in a 198.51.100.9"]
    # In neither zone: the last file stanza answers REFUSED, as CoreDNS's does.
    r = await srv.query("www.example.com", "A")
    assert (r.rcode(), r.authority) == (dns.rcode.REFUSED, [])


async def test_zone_transfers_are_refused(srv: Any) -> None:
    for rdtype in ("AXFR", "IXFR"):
        r = await srv.query("example.org", rdtype, tcp=True)
        assert (r.rcode(), r.answer, bool(r.flags & dns.flags.AA)) == (dns.rcode.REFUSED, [], False)


async def test_two_stanzas_and_fallthrough(serve: Serve, zone: Path, tmp_path: Path) -> None:
    second = tmp_path / "db.second"
    second.write_text("$TTL 60\n@ SOA ns. host. 7 2 3 4 5\nabsent IN A 198.51.100.1\n"
                      "only.sub IN A 198.51.100.2\n")
    srv = await serve(f"""example.org:PORT {{
        file {zone} {{
            fallthrough sub.example.org absent.example.org
        }}
        file {second}
    }}""")
    assert texts((await srv.query("absent.example.org", "A")).answer) == [
        "absent.example.org. 60 in a 198.51.100.1"]
    # Below a delegation the first zone refers; fallthrough is for NXDOMAIN only.
    assert not (await srv.query("only.sub.example.org", "A")).flags & dns.flags.AA
    # Outside the fallthrough zones an NXDOMAIN stays the first zone's.
    r = await srv.query("nothere.example.org", "A")
    assert (r.rcode(), texts(r.authority)) == (NXDOMAIN, SOA_AUTH)
    # NODATA does not fall through either.
    assert (await srv.query("www.example.org", "TXT")).authority[0].name.to_text() == "example.org."


async def test_large_answers_truncate_on_udp_and_are_whole_on_tcp(serve: Serve, tmp_path: Path) -> None:
    db = tmp_path / "db"
    db.write_text("$TTL 60\n@ SOA ns. host. 1 2 3 4 5\n"
                  + "".join(f"big IN A 198.51.100.{i}\n" for i in range(1, 121)))
    srv = await serve(f"example.org:PORT {{\n file {db}\n}}")
    udp = await srv.query("big.example.org", "A", use_edns=0, payload=1232)
    assert udp.flags & dns.flags.TC and udp.rcode() == NOERROR
    tcp = await srv.query("big.example.org", "A", use_edns=0, payload=1232, tcp=True)
    assert (tcp.rcode(), len(tcp.answer[0])) == (NOERROR, 120)


async def test_repeated_questions_are_served_from_the_template(srv: Any) -> None:
    resp = await srv.from_template("file", "_sip._tcp.example.org", "_SIP._TCP.Example.ORG", "SRV")
    assert len(dns.message.from_wire(resp).additional) == 2


def bump(path: Path) -> None:
    """Move the mtime on, so the change shows whatever the file system clock's grain."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


async def test_reload_swaps_the_zone_when_the_serial_changes(serve: Serve, zone: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    srv = await serve(f"example.org:PORT {{\n file {zone} {{\n reload 100ms\n }}\n}}")
    assert srv.handler("file").ticker.running
    with caplog.at_level(logging.INFO, logger="interkube.plugin.file"):
        write_zone(zone, serial=2024010102, extra="fresh IN A 192.0.2.99\n")
        bump(zone)

        async def reloaded() -> bool:
            return (await srv.query("fresh.example.org", "A")).rcode() == NOERROR

        await until(reloaded, "fresh.example.org answered from the reloaded zone", 10)
    assert any("serial 2024010102" in r.getMessage() for r in caplog.records)
    assert texts((await srv.query("example.org", "SOA")).answer) == [SOA.format(serial=2024010102)]


async def test_same_serial_broken_file_and_missing_file_keep_the_zone(
        serve: Serve, zone: Path, caplog: pytest.LogCaptureFixture) -> None:
    srv = await serve(f"example.org:PORT {{\n file {zone} {{\n reload 0\n }}\n}}")
    handler = srv.handler("file")
    assert not handler.ticker.running
    with caplog.at_level(logging.INFO, logger="interkube.plugin.file"):
        # Same serial: not taken, as in CoreDNS.
        write_zone(zone, extra="fresh IN A 192.0.2.99\n")
        bump(zone)
        await handler.check()
        assert (await srv.query("fresh.example.org", "A")).rcode() == NXDOMAIN
        # A broken file: reported once, the zone stays.
        zone.write_text(ZONE.format(serial=9, extra="bad IN A not-an-address\n"))
        bump(zone)
        await handler.check()
        await handler.check()
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and f"{zone}:" in errors[0].getMessage()
        # Gone: logged once, the zone stays.
        zone.unlink()
        await handler.check()
        await handler.check()
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
    assert texts((await srv.query("www.example.org", "A")).answer) == ["www.example.org. 300 in a 192.0.2.10"]
    write_zone(zone, serial=10, extra="fresh IN A 192.0.2.99\n")
    await handler.check()
    assert (await srv.query("fresh.example.org", "A")).rcode() == NOERROR


def test_demo_zones_load() -> None:
    from interkube.plugins.file.zone import load_zone

    for name in ("remote-cluster.db", "local-cluster.db"):
        path = default_dir() / name
        data = load_zone(path.read_text(), "cluster.local.", str(path))
        assert data.ns is not None and data.soa.ttl == 5


def section(out: str, name: str) -> list[list[str]]:
    """The records dig printed in one section, split into fields."""
    m = re.search(rf";; {name} SECTION:\n(.*?)(?:\n\n|\Z)", out, re.S)
    return [line.split() for line in m.group(1).splitlines()] if m else []


@needs_dig
def test_dig_against_a_subprocess(tmp_path: Path, zone: Path) -> None:
    """Forwarded DNS between clusters: the SRV question against the demo's remote-cluster zone, and
    case echo, with dig."""
    port = free_port()
    corefile = tmp_path / "Corefile"
    corefile.write_text(f"cluster.local:{port} {{\n  file {default_dir() / 'remote-cluster.db'}\n}}\n"
                        f"example.org:{port} {{\n  file {zone}\n}}\n")
    with interkube_process(corefile, port):
        srv_out = dig(port, "+norec", "_couchbase._tcp.cb-example-srv.remote.svc.cluster.local.", "SRV")
        www_out = dig(port, "+norec", "WwW.ExAmple.ORG", "A")
    assert "status: NOERROR" in srv_out and " aa" in srv_out
    pods = {"10-1-17-231": "10.1.17.231", "10-1-46-20": "10.1.46.20", "10-1-68-212": "10.1.68.212"}
    answer = section(srv_out, "ANSWER")
    assert sorted(rr[3:] for rr in answer) == sorted(
        ["SRV", "0", "33", "11210", f"{pod}.cb-example-srv.remote.svc.cluster.local."] for pod in pods)
    assert {rr[1] for rr in answer} == {"5"}
    additional = section(srv_out, "ADDITIONAL")
    assert sorted((rr[0], rr[3], rr[4]) for rr in additional) == sorted(
        (f"{pod}.cb-example-srv.remote.svc.cluster.local.", "A", ip) for pod, ip in pods.items())
    assert section(www_out, "ANSWER") == [["WwW.ExAmple.ORG.", "300", "IN", "A", "192.0.2.10"]]

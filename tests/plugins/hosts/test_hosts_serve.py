"""hosts answering through real sockets: every rule of CoreDNS's plugin/hosts, reload, fast path."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.reversename
import pytest

from testkit.dig import dig, needs_dig
from testkit.servers import free_port, interkube_process
from testkit.waiting import until

Serve = Callable[[str], Awaitable[Any]]  # the `serve` fixture (conftest.py)

HOSTS = """\
# a comment line
192.0.2.10   www.example.org www2.example.org   # a trailing comment
2001:db8::10 www.example.org
192.0.2.11   v4only.example.org
2001:db8::11 v6only.example.org
192.0.2.12   Mixed.Example.ORG
192.0.2.13   outside.example.net
::ffff:192.0.2.14 mapped.example.org
fe80::15%eth0 scoped.example.org
not-an-address bogus.example.org
192.0.2.16
300.1.1.1 bad.example.org
192.0.2.17 bad..name.example.org good.example.org
"""

# What the next plugin in the chain answers, so that a pass from hosts shows in the response.
NEXT_ZONE = """\
$TTL 300
@ IN SOA ns.example.net. hostmaster.example.net. 1 7200 3600 86400 300
@ IN NS ns.example.net.
{records}
"""


@pytest.fixture
def hosts_file(tmp_path: Path) -> Path:
    path = tmp_path / "hosts"
    path.write_text(HOSTS)
    return path


def zone_file(tmp_path: Path, name: str, records: str) -> Path:
    path = tmp_path / name
    path.write_text(NEXT_ZONE.format(records=records))
    return path


def addresses(response: dns.message.Message) -> list[str]:
    return sorted(rd.to_text() for rrset in response.answer for rd in rrset)


def aa(response: dns.message.Message) -> bool:
    return bool(response.flags & dns.flags.AA)


async def test_a_and_aaaa_from_the_file(serve: Serve, hosts_file: Path) -> None:
    srv = await serve(f"example.org:PORT {{\n hosts {hosts_file}\n}}")
    a = await srv.query("www.example.org", "A")
    assert (a.rcode(), aa(a), addresses(a)) == (dns.rcode.NOERROR, True, ["192.0.2.10"])
    assert a.answer[0].ttl == 3600
    aaaa = await srv.query("www.example.org", "AAAA")
    assert addresses(aaaa) == ["2001:db8::10"]
    assert addresses(await srv.query("www2.example.org", "A")) == ["192.0.2.10"]  # an alias


async def test_names_match_any_case_and_the_case_is_echoed(serve: Serve, hosts_file: Path) -> None:
    srv = await serve(f"example.org:PORT {{\n hosts {hosts_file}\n}}")
    r = await srv.query("WwW.ExAmple.ORG", "A")
    assert addresses(r) == ["192.0.2.10"]
    assert r.question[0].name.labels == (b"WwW", b"ExAmple", b"ORG", b"")
    assert r.answer[0].name.labels == (b"WwW", b"ExAmple", b"ORG", b"")
    assert addresses(await srv.query("mixed.example.org", "A")) == ["192.0.2.12"]


async def test_existing_name_without_the_type_is_nodata(serve: Serve, hosts_file: Path) -> None:
    srv = await serve(f"example.org:PORT {{\n hosts {hosts_file}\n}}")
    for name, rdtype in (("v4only.example.org", "AAAA"), ("v6only.example.org", "A"),
                         ("www.example.org", "MX"), ("www.example.org", "TXT")):
        r = await srv.query(name, rdtype)
        assert (r.rcode(), aa(r), r.answer, r.authority) == (dns.rcode.NOERROR, True, [], []), name


async def test_absent_name_is_servfail_without_fallthrough(serve: Serve, hosts_file: Path) -> None:
    srv = await serve(f"example.org:PORT {{\n hosts {hosts_file}\n}}")
    r = await srv.query("absent.example.org", "A")
    assert (r.rcode(), aa(r), r.answer) == (dns.rcode.SERVFAIL, False, [])


async def test_fallthrough_passes_absent_names(serve: Serve, hosts_file: Path, tmp_path: Path) -> None:
    zone = zone_file(tmp_path, "db", "absent IN A 198.51.100.1\nwww IN A 198.51.100.2")
    srv = await serve(f"""example.org:PORT {{
        hosts {hosts_file} {{
            fallthrough
        }}
        file {zone}
    }}""")
    assert addresses(await srv.query("absent.example.org", "A")) == ["198.51.100.1"]
    # A name hosts knows is still answered by hosts, even when a later plugin knows it too.
    assert addresses(await srv.query("www.example.org", "A")) == ["192.0.2.10"]
    # NODATA is an answer, not a miss: no fallthrough.
    r = await srv.query("v4only.example.org", "AAAA")
    assert (r.rcode(), r.answer, r.authority) == (dns.rcode.NOERROR, [], [])


async def test_fallthrough_zones_limit_what_passes(serve: Serve, hosts_file: Path, tmp_path: Path) -> None:
    zone = zone_file(tmp_path, "db", "x.sub IN A 198.51.100.3")
    srv = await serve(f"""example.org:PORT {{
        hosts {hosts_file} {{
            fallthrough sub.example.org
        }}
        file {zone}
    }}""")
    assert addresses(await srv.query("x.sub.example.org", "A")) == ["198.51.100.3"]
    assert (await srv.query("y.sub.example.org", "A")).rcode() == dns.rcode.NXDOMAIN  # from file
    assert (await srv.query("y.example.org", "A")).rcode() == dns.rcode.SERVFAIL


async def test_names_outside_zones_pass_and_their_entries_are_ignored(
        serve: Serve, hosts_file: Path, tmp_path: Path) -> None:
    zone = zone_file(tmp_path, "db", "outside IN A 198.51.100.4")
    srv = await serve(f""".:PORT {{
        hosts {hosts_file} example.org
        file {zone} example.net
    }}""")
    # hosts has 192.0.2.13 for this name, but example.net is not one of its zones.
    assert addresses(await srv.query("outside.example.net", "A")) == ["198.51.100.4"]
    # No PTR either: the entry was dropped when the file was read.
    r = await srv.query(dns.reversename.from_address("192.0.2.13").to_text(), "PTR")
    assert r.rcode() == dns.rcode.REFUSED  # file, last in the chain, refuses it: not hosts
    assert r.answer == []


async def test_bad_lines_are_skipped_and_odd_addresses_normalized(serve: Serve, hosts_file: Path) -> None:
    srv = await serve(f"example.org:PORT {{\n hosts {hosts_file}\n}}")
    assert addresses(await srv.query("good.example.org", "A")) == ["192.0.2.17"]
    assert addresses(await srv.query("mapped.example.org", "A")) == ["192.0.2.14"]
    assert addresses(await srv.query("scoped.example.org", "AAAA")) == ["fe80::15"]
    for name in ("bogus.example.org", "bad.example.org"):
        assert (await srv.query(name, "A")).rcode() == dns.rcode.SERVFAIL, name


WILD_HOSTS = """\
192.0.2.1    *.example.org
2001:db8::1  *.v6.example.org
192.0.2.2    a.example.org
2001:db8::3  b.example.org
192.0.2.7    w.sub.example.org *.sub.example.org
192.0.2.8    c.*.example.org
"""


async def test_wildcard_entries(serve: Serve, tmp_path: Path) -> None:
    path = tmp_path / "wild.hosts"
    path.write_text(WILD_HOSTS)
    srv = await serve(f".:PORT {{\n hosts {path} example.org\n}}")
    r = await srv.query("X.example.org", "A")
    assert (addresses(r), r.answer[0].name.labels[0]) == (["192.0.2.1"], b"X")
    assert addresses(await srv.query("a.example.org", "A")) == ["192.0.2.2"]  # its own entry wins
    assert addresses(await srv.query("y.sub.example.org", "A")) == ["192.0.2.7"]
    # Per family: b has only an AAAA entry of its own, so A comes from the wildcard.
    assert addresses(await srv.query("b.example.org", "A")) == ["192.0.2.1"]
    assert addresses(await srv.query("b.example.org", "AAAA")) == ["2001:db8::3"]
    # A name a wildcard covers exists: other types are NODATA.
    for name, rdtype in (("x.example.org", "AAAA"), ("a.example.org", "AAAA"), ("y.v6.example.org", "A")):
        r = await srv.query(name, rdtype)
        assert (r.rcode(), r.answer) == (dns.rcode.NOERROR, []), name
    # Exactly one label: neither the parent nor two labels below match.
    for name in ("example.org", "deep.x.example.org", "c.q.example.org"):
        assert (await srv.query(name, "A")).rcode() == dns.rcode.SERVFAIL, name
    # A `*` that is not the leftmost label is an ordinary one.
    assert addresses(await srv.query("c.*.example.org", "A")) == ["192.0.2.8"]
    # Wildcards name no host: no PTR from them.
    assert addresses(await srv.query("7.2.0.192.in-addr.arpa", "PTR")) == ["w.sub.example.org."]
    assert (await srv.query("1.2.0.192.in-addr.arpa", "PTR")).rcode() == dns.rcode.SERVFAIL


async def test_fallthrough_unsupported_passes_other_types(serve: Serve, hosts_file: Path,
                                                          tmp_path: Path) -> None:
    zone = zone_file(tmp_path, "db", '* IN TXT "from-file"\n* IN MX 1 mx.example.net.')
    srv = await serve(f"""example.org:PORT {{
        hosts {hosts_file} {{
            192.0.2.5 x.sub.example.org
            fallthrough sub.example.org www.example.org
            fallthrough_unsupported
        }}
        file {zone}
    }}""")
    for name in ("www.example.org", "x.sub.example.org"):
        assert [rr.to_text() for rr in (await srv.query(name, "TXT")).answer[0]] == ['"from-file"']
        assert len((await srv.query(name, "MX")).answer) == 1
    # ANY passes too (file answers NODATA, with its SOA).
    assert [rrset.rdtype for rrset in (await srv.query("www.example.org", "ANY")).authority] == [
        dns.rdatatype.SOA]
    # A and AAAA never pass: NODATA from hosts (no SOA).
    r = await srv.query("www.example.org", "A")
    assert addresses(r) == ["192.0.2.10"]
    r = await srv.query("x.sub.example.org", "AAAA")
    assert (r.rcode(), r.answer, r.authority) == (dns.rcode.NOERROR, [], [])
    # Outside the fallthrough zones, other types stay NODATA.
    r = await srv.query("v4only.example.org", "TXT")
    assert (r.rcode(), r.answer, r.authority) == (dns.rcode.NOERROR, [], [])


async def test_ptr_for_addresses_in_the_entries(serve: Serve, hosts_file: Path) -> None:
    # The zones are example.org only: PTR is answered anyway (the block routes it here).
    srv = await serve(f".:PORT {{\n hosts {hosts_file} example.org\n}}")
    r = await srv.query(dns.reversename.from_address("192.0.2.10").to_text(), "PTR")
    assert (r.rcode(), aa(r)) == (dns.rcode.NOERROR, True)
    assert addresses(r) == ["www.example.org.", "www2.example.org."]
    assert r.answer[0].ttl == 3600
    r6 = await srv.query(dns.reversename.from_address("2001:db8::10").to_text(), "PTR")
    assert addresses(r6) == ["www.example.org."]
    mixed = await srv.query(dns.reversename.from_address("192.0.2.12").to_text(), "PTR")
    assert addresses(mixed) == ["mixed.example.org."]  # names are lower-cased


async def test_ptr_miss_passes_even_without_fallthrough(serve: Serve, hosts_file: Path, tmp_path: Path) -> None:
    rev = zone_file(tmp_path, "db.rev", "99 IN PTR from-file.example.net.\n10 IN PTR from-file.example.net.")
    srv = await serve(f""".:PORT {{
        hosts {hosts_file} example.org
        file {rev} 2.0.192.in-addr.arpa
    }}""")
    r = await srv.query("99.2.0.192.in-addr.arpa", "PTR")
    assert addresses(r) == ["from-file.example.net."]
    # Other types in a reverse zone are not hosts' to answer: it is not one of its zones.
    txt = await srv.query("10.2.0.192.in-addr.arpa", "TXT")
    assert (txt.rcode(), [rrset.rdtype for rrset in txt.authority]) == (
        dns.rcode.NOERROR, [dns.rdatatype.SOA])  # file's NODATA
    # A PTR question for a name that is no reverse name at all passes too (file refuses it).
    assert (await srv.query("www.example.org", "PTR")).rcode() == dns.rcode.REFUSED


async def test_no_reverse_leaves_ptr_to_the_next_plugin(serve: Serve, hosts_file: Path, tmp_path: Path) -> None:
    rev = zone_file(tmp_path, "db.rev", "10 IN PTR from-file.example.net.")
    srv = await serve(f""".:PORT {{
        hosts {hosts_file} example.org {{
            no_reverse
        }}
        file {rev} 2.0.192.in-addr.arpa
    }}""")
    assert addresses(await srv.query("10.2.0.192.in-addr.arpa", "PTR")) == ["from-file.example.net."]
    assert addresses(await srv.query("www.example.org", "A")) == ["192.0.2.10"]


async def test_inline_entries_merge_with_the_file(serve: Serve, hosts_file: Path) -> None:
    srv = await serve(f""".:PORT {{
        hosts {hosts_file} example.org {{
            192.0.2.99 www.example.org
            192.0.2.98 inline.example.org
            ttl 60
        }}
    }}""")
    r = await srv.query("www.example.org", "A")
    assert addresses(r) == ["192.0.2.10", "192.0.2.99"]
    assert r.answer[0].ttl == 60
    assert addresses(await srv.query("inline.example.org", "A")) == ["192.0.2.98"]
    ptr = await srv.query("98.2.0.192.in-addr.arpa", "PTR")
    assert (addresses(ptr), ptr.answer[0].ttl) == (["inline.example.org."], 60)


async def test_tcp_answers_the_same(serve: Serve, hosts_file: Path) -> None:
    srv = await serve(f"example.org:PORT {{\n hosts {hosts_file}\n}}")
    r = await srv.query("www.example.org", "AAAA", tcp=True)
    assert addresses(r) == ["2001:db8::10"]


async def test_large_answers_truncate_on_udp_and_are_whole_on_tcp(serve: Serve, tmp_path: Path) -> None:
    path = tmp_path / "many.hosts"
    path.write_text("".join(f"2001:db8::{i:x} many.example.org\n" for i in range(1, 101)))
    srv = await serve(f"example.org:PORT {{\n hosts {path}\n}}")
    udp = await srv.query("many.example.org", "AAAA", use_edns=0, payload=1232)
    assert udp.flags & dns.flags.TC and udp.rcode() == dns.rcode.NOERROR
    tcp = await srv.query("many.example.org", "AAAA", use_edns=0, payload=1232, tcp=True)
    assert (tcp.rcode(), len(tcp.answer[0])) == (dns.rcode.NOERROR, 100)


async def test_repeated_questions_are_served_from_the_template(serve: Serve, hosts_file: Path) -> None:
    srv = await serve(f"example.org:PORT {{\n hosts {hosts_file}\n}}")
    resp = await srv.from_template("hosts", "www.example.org", "WWW.Example.Org", "A")
    assert dns.message.from_wire(resp).answer[0].name.labels[0] == b"WWW"


def bump(path: Path, text: str) -> None:
    """Rewrite ``path`` and move its mtime on, so the change shows whatever the clock's grain."""
    st = path.stat()
    path.write_text(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


async def test_reload_swaps_the_entries(serve: Serve, hosts_file: Path) -> None:
    srv = await serve(f"example.org:PORT {{\n hosts {hosts_file} {{\n reload 100ms\n }}\n}}")
    assert srv.handler("hosts").ticker.running  # type: ignore[attr-defined]
    assert addresses(await srv.query("www.example.org", "A")) == ["192.0.2.10"]
    bump(hosts_file, "192.0.2.200 www.example.org\n192.0.2.201 new.example.org\n")

    async def reloaded() -> bool:
        return addresses(await srv.query("www.example.org", "A")) == ["192.0.2.200"]

    await until(reloaded, "www.example.org answered from the rewritten hosts file", 10)
    assert addresses(await srv.query("new.example.org", "A")) == ["192.0.2.201"]
    assert (await srv.query("v4only.example.org", "A")).rcode() == dns.rcode.SERVFAIL


async def test_reload_zero_starts_no_task(serve: Serve, hosts_file: Path) -> None:
    srv = await serve(f"example.org:PORT {{\n hosts {hosts_file} {{\n reload 0\n }}\n}}")
    assert not srv.handler("hosts").ticker.running  # type: ignore[attr-defined]


async def test_unreadable_file_keeps_the_last_entries_and_logs_once(
        serve: Serve, hosts_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    srv = await serve(f"example.org:PORT {{\n hosts {hosts_file} {{\n reload 0\n }}\n}}")
    handler = srv.handler("hosts")
    hosts_file.unlink()
    with caplog.at_level(logging.INFO, logger="interkube.plugin.hosts"):
        for _ in range(3):
            await handler.check()  # type: ignore[attr-defined]
        assert addresses(await srv.query("www.example.org", "A")) == ["192.0.2.10"]
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and str(hosts_file) in warnings[0].getMessage()
        hosts_file.write_text("192.0.2.222 www.example.org\n")
        await handler.check()  # type: ignore[attr-defined]
    assert addresses(await srv.query("www.example.org", "A")) == ["192.0.2.222"]
    assert any("readable again" in r.getMessage() for r in caplog.records)


async def test_missing_file_serves_inline_entries_until_it_appears(
        serve: Serve, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "later.hosts"
    with caplog.at_level(logging.WARNING, logger="interkube.plugin.hosts"):
        srv = await serve(f"""example.org:PORT {{
            hosts {path} {{
                192.0.2.50 inline.example.org
                reload 0
            }}
        }}""")
    assert any("does not exist" in r.getMessage() for r in caplog.records)
    assert addresses(await srv.query("inline.example.org", "A")) == ["192.0.2.50"]
    assert (await srv.query("www.example.org", "A")).rcode() == dns.rcode.SERVFAIL
    path.write_text("192.0.2.51 www.example.org\n")
    await srv.handler("hosts").check()  # type: ignore[attr-defined]
    assert addresses(await srv.query("www.example.org", "A")) == ["192.0.2.51"]
    assert addresses(await srv.query("inline.example.org", "A")) == ["192.0.2.50"]


@needs_dig
def test_dig_against_a_subprocess(tmp_path: Path, hosts_file: Path) -> None:
    port = free_port()
    corefile = tmp_path / "Corefile"
    corefile.write_text(f"example.org:{port} {{\n  hosts {hosts_file}\n}}\n")
    with interkube_process(corefile, port):
        out = dig(port, "+norec", "+noall", "+answer", "+comments", "WwW.ExAmple.ORG", "A")
    assert "status: NOERROR" in out
    answer = [line.split() for line in out.splitlines() if line and not line.startswith(";")]
    assert answer == [["WwW.ExAmple.ORG.", "3600", "IN", "A", "192.0.2.10"]]


async def test_hosts_metrics_are_published(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from testkit.servers import free_port, in_process

    port = free_port()
    core = (f"example.org:{port} {{\n    bind 127.0.0.1\n"
            "    hosts {\n        192.0.2.1 a.example.org\n        192.0.2.2 b.example.org\n    }\n}\n")
    async with in_process(core) as server:
        from prometheus_client import generate_latest

        text = generate_latest(server.services.metrics.registry).decode()  # type: ignore[attr-defined]
    # Counted as CoreDNS counts: name->address and address->name tables together.
    assert "interkube_hosts_entries 4.0" in text
    assert "interkube_hosts_reload_timestamp_seconds " in text

"""The walk with a search list of the Corefile's (the resolv.conf form), over a file zone: which
questions are walked, what ends a walk, what the answer found under another name looks like."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest

Running = Any  # tests/plugins/conftest.py's Running
Serve = Callable[[str], Awaitable[Running]]

ZONE = """\
$ORIGIN example.org.
@ 3600 IN SOA ns admin 1 7200 3600 1209600 300
@ 3600 IN NS ns
ns 3600 IN A 192.0.2.53
www.eu 300 IN A 192.0.2.81
www.us 300 IN A 192.0.2.82
www.us 300 IN AAAA 2001:db8::82
alias.us 60 IN CNAME www.us
LONG_LABEL.us 300 IN A 192.0.2.90
"""
#: A search domain that makes some names too long (a walk skips those), and such a name.
LONG = ".".join(["l" * 60] * 3) + ".example.org"
LONG_LABEL = "x" * 60


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "db").write_text(ZONE.replace("LONG_LABEL", LONG_LABEL))
    (tmp_path / "resolv.conf").write_text(f"search eu.example.org {LONG} us.example.org example.org\n")
    return tmp_path


def block(files: Path, *, autopath: bool = True, tail: str = "") -> str:
    line = f"    autopath {files / 'resolv.conf'}\n" if autopath else ""
    return f"example.org:PORT {{\n    bind 127.0.0.1\n{line}    file {files / 'db'}\n{tail}}}\n"


def records(msg: dns.message.Message) -> list[str]:
    return [f"{rrset.name} {rrset.ttl} {dns.rdatatype.to_text(rrset.rdtype)} {rd}"
            for rrset in msg.answer for rd in rrset]


async def test_the_first_answer_under_another_name_gets_a_cname_to_it(serve: Serve, files: Path) -> None:
    srv = await serve(block(files))
    r = await srv.query("alias.eu.example.org")
    assert r.rcode() == dns.rcode.NOERROR and r.question[0].name.to_text() == "alias.eu.example.org."
    # The CNAME goes in front of the first record of another name, with its TTL; the chain's
    # own CNAME follows.
    assert records(r) == ["alias.eu.example.org. 60 CNAME alias.us.example.org.",
                          "alias.us.example.org. 60 CNAME www.us.example.org.", "www.us.example.org. 300 A 192.0.2.82"]
    # Skipped on the way: a name too long with the second search domain (over 255 bytes).
    assert 1 + len(LONG_LABEL) + len(dns.name.from_text(LONG).to_wire() or b"") > 255
    r = await srv.query(f"{LONG_LABEL}.eu.example.org")
    assert records(r) == [f"{LONG_LABEL}.eu.example.org. 300 CNAME {LONG_LABEL}.us.example.org.",
                          f"{LONG_LABEL}.us.example.org. 300 A 192.0.2.90"]


async def test_nodata_under_another_name_is_the_answer(serve: Serve, files: Path) -> None:
    srv = await serve(block(files))
    r = await srv.query("ns.eu.example.org", "AAAA")
    assert (r.rcode(), r.answer) == (dns.rcode.NOERROR, [])  # (ns.example.org has no AAAA: found, as CoreDNS)
    assert r.question[0].name.to_text() == "ns.eu.example.org." and r.authority


@pytest.mark.parametrize("name", ["www.eu.example.org", "eu.example.org", "www.us.example.org", "x.www.eu.example.org",
                                  "nope.eu.example.org"])
async def test_what_the_walk_does_not_change(serve: Serve, files: Path, name: str) -> None:
    # The question's own answer: found in the first search domain, not under it (the first
    # domain itself included), or nowhere (NXDOMAIN; the walk ended at the bare name, which
    # the file plugin refuses without answering, as CoreDNS's does).
    walked = await serve(block(files))
    plain = await serve(block(files, autopath=False))
    for rdtype in ("A", "AAAA"):
        a, b = await walked.query(name, rdtype), await plain.query(name, rdtype)
        assert (a.rcode(), records(a), a.authority) == (b.rcode(), records(b), b.authority), (name, rdtype)


async def test_the_end_of_the_chain_fails_the_walk(serve: Serve, files: Path) -> None:
    # hosts passes names it does not have on; the walk's last name, the bare one, reaches the end
    # of the chain: CoreDNS's "no next plugin found", which fails the query.
    tail = "    hosts {\n        192.0.2.9 other.test\n        fallthrough\n    }\n"
    srv = await serve(block(files, tail=tail).replace(f"    file {files / 'db'}\n", ""))
    r = await srv.query("nope.eu.example.org")
    assert r.rcode() == dns.rcode.SERVFAIL and r.question[0].name.to_text() == "nope.eu.example.org."

"""The same zone served by CoreDNS's file plugin and by interkube's: the answers must match.

Needs the CoreDNS peer (scripts/build-peers); skipped without it. Where interkube follows the
RFCs instead (the README's "Differences from CoreDNS"), the tests at the end show both answers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import pytest

from testkit.coredns import CoreDNS
from testkit.servers import free_port, interkube_process, query

from test_file_serve import CASES, LONG_CHAIN, ZONE, texts

pytestmark = pytest.mark.peers

EXTRA = [("www.example.org", "ANY"), ("x.wild.example.org", "ANY"), ("a.sub.example.org", "DS"),
         ("ns.sub.example.org", "A"), ("WwW.ExAmple.ORG", "AAAA"), ("example.org", "AXFR"),
         ("www.example.com", "A")]


def summary(r: dns.message.Message) -> tuple[str, bool, list[str], list[str], list[str]]:
    return (dns.rcode.to_text(r.rcode()), bool(r.flags & dns.flags.AA), texts(r.answer),
            texts(r.authority), texts(r.additional))


@contextlib.contextmanager
def pair(binary: Path, work: Path, zone_text: str, key: str = "example.org",
         zones: str = "") -> Iterator[tuple[CoreDNS, int]]:
    """CoreDNS and interkube, each with the block `KEY { file DB ZONES }` serving ``zone_text``."""
    db = work / "db"
    db.write_text(zone_text)
    directive = f"file {db} {zones}".rstrip()
    port = free_port()
    corefile = work / "Corefile"
    corefile.write_text(f"{key}:{port} {{\n  {directive}\n}}\n")
    with CoreDNS(binary, f"{key} {{\n  bind 127.0.0.1\n  {directive}\n}}\n", work / "coredns",
                 probe_name="example.org.") as coredns, interkube_process(corefile, port):
        yield coredns, port


@pytest.fixture(scope="module")
def both(coredns_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CoreDNS, int]]:
    # Both serve "." with the file for example.org only, so out-of-zone handling is compared too.
    zone = ZONE.format(serial=2024010101, extra=LONG_CHAIN)
    with pair(coredns_binary, tmp_path_factory.mktemp("file-vs-coredns"), zone, ".", "example.org") as running:
        yield running


@pytest.mark.parametrize("question", list(CASES) + EXTRA, ids=lambda q: f"{q[0]}/{q[1]}")
def test_same_answer_as_coredns(both: tuple[CoreDNS, int], question: tuple[str, str]) -> None:
    coredns, port = both
    name, rdtype = question
    tcp = rdtype == "AXFR"
    assert summary(query(name, rdtype, port, tcp=tcp)) == summary(coredns.query(name, rdtype, tcp=tcp))


# These guard the README's "Differences from CoreDNS": when CoreDNS changes, the list must too.

def test_difference_wildcard_at_an_empty_non_terminal(coredns_binary: Path, tmp_path: Path) -> None:
    zone = "$TTL 60\n@ SOA ns. host. 1 2 3 4 5\n*.example.org. A 192.0.2.1\nd.c.example.org. A 192.0.2.2\n"
    with pair(coredns_binary, tmp_path, zone) as (coredns, port):
        # c.example.org exists (it has d below it), so the wildcard does not apply (RFC 4592).
        assert texts(coredns.query("c.example.org", "A").answer) == ["c.example.org. 60 in a 192.0.2.1"]
        r = query("c.example.org", "A", port)
    assert (r.rcode(), r.answer, len(r.authority)) == (dns.rcode.NOERROR, [], 1)


def test_difference_apex_of_a_zone_with_only_soa_and_ns(coredns_binary: Path, tmp_path: Path) -> None:
    zone = "$TTL 60\n@ SOA ns. host. 1 2 3 4 5\n@ NS ns.example.net.\n"
    with pair(coredns_binary, tmp_path, zone) as (coredns, port):
        assert coredns.query("example.org", "A").rcode() == dns.rcode.NXDOMAIN
        r = query("example.org", "A", port)
    assert (r.rcode(), r.answer, len(r.authority)) == (dns.rcode.NOERROR, [], 1)

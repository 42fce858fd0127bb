"""The same hosts file and inline entries in CoreDNS and in interkube: the answers must match.

Needs the CoreDNS peer (scripts/build-peers); skipped without it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.reversename
import dns.rrset
import pytest

from testkit.coredns import CoreDNS
from testkit.servers import free_port, interkube_process, query

from test_hosts_serve import HOSTS, NEXT_ZONE, WILD_HOSTS

pytestmark = pytest.mark.peers


def rev(address: str) -> str:
    return dns.reversename.from_address(address).to_text()


QUESTIONS = [
    ("www.example.org", "A"), ("www.example.org", "AAAA"), ("WwW.ExAmple.org", "MX"),
    ("www.example.org", "ANY"), ("v4only.example.org", "AAAA"), ("v6only.example.org", "A"),
    ("absent.example.org", "A"), ("x.sub.example.org", "A"), ("mixed.example.org", "A"),
    ("mapped.example.org", "A"), ("scoped.example.org", "AAAA"), ("bogus.example.org", "A"),
    ("good.example.org", "A"), ("inline.example.org", "A"), ("outside.example.net", "A"),
    (rev("192.0.2.10"), "PTR"), (rev("2001:db8::10"), "PTR"), (rev("192.0.2.12"), "PTR"),
    (rev("192.0.2.13"), "PTR"), ("99.2.0.192.in-addr.arpa", "PTR"), ("98.2.0.192.in-addr.arpa", "PTR"),
    ("10.2.0.192.in-addr.arpa", "TXT"), ("www.example.org", "PTR"),
]


def records(rrsets: list[dns.rrset.RRset]) -> list[str]:
    """One line per record, lower case, sorted: the order of records is not meaning."""
    return sorted(line.lower() for rrset in rrsets for line in rrset.to_text().splitlines())


def summary(r: dns.message.Message) -> tuple[str, bool, list[str], list[str]]:
    return (dns.rcode.to_text(r.rcode()), bool(r.flags & dns.flags.AA), records(r.answer),
            records(r.authority))


@contextlib.contextmanager
def pair(binary: Path, work: Path, hosts_text: str, options: str,
         next_records: str) -> Iterator[tuple[CoreDNS, int]]:
    """CoreDNS and interkube, each serving `. { hosts FILE example.org { OPTIONS }; file ... }`.

    The file plugin after hosts serves ``next_records`` for 2.0.192.in-addr.arpa and
    example.org, so what hosts passes on shows in the answers.
    """
    hosts = work / "hosts"
    hosts.write_text(hosts_text)
    following = work / "db"
    following.write_text(NEXT_ZONE.format(records=next_records))
    body = f"""
        hosts {hosts} example.org {{
            {options}
        }}
        file {following} 2.0.192.in-addr.arpa example.org
    """
    port = free_port()
    corefile = work / "Corefile"
    corefile.write_text(f".:{port} {{{body}}}\n")
    with CoreDNS(binary, f". {{\n  bind 127.0.0.1{body}}}\n", work / "coredns") as coredns, \
            interkube_process(corefile, port):
        yield coredns, port


@pytest.fixture(scope="module")
def plain(coredns_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CoreDNS, int]]:
    options = "192.0.2.99 www.example.org\n192.0.2.98 inline.example.org\nfallthrough sub.example.org"
    with pair(coredns_binary, tmp_path_factory.mktemp("hosts-plain"), HOSTS, options,
              "99 IN PTR from-file.example.net.\n10 IN PTR from-file.example.net.") as running:
        yield running


@pytest.fixture(scope="module")
def wild(coredns_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CoreDNS, int]]:
    options = "fallthrough sub.example.org example.org\nfallthrough_unsupported"
    with pair(coredns_binary, tmp_path_factory.mktemp("hosts-wild"), WILD_HOSTS, options,
              '* IN TXT "from-file"\n* IN A 198.51.100.1\n* IN MX 1 mx.example.net.') as running:
        yield running


WILD_QUESTIONS = [
    ("x.example.org", "A"), ("X.example.org", "AAAA"), ("x.example.org", "TXT"), ("example.org", "A"),
    ("deep.x.example.org", "A"), ("a.example.org", "A"), ("a.example.org", "AAAA"),
    ("b.example.org", "A"), ("b.example.org", "AAAA"), ("y.v6.example.org", "A"),
    ("y.v6.example.org", "AAAA"), ("y.sub.example.org", "A"), ("y.sub.example.org", "MX"),
    ("c.q.example.org", "A"), ("c.*.example.org", "A"), ("*.example.org", "A"),
    ("a.example.org", "ANY"), ("a.example.org", "HTTPS"), (rev("192.0.2.1"), "PTR"),
    (rev("192.0.2.7"), "PTR"),
]


@pytest.mark.parametrize("question", QUESTIONS, ids=lambda q: f"{q[0]}/{q[1]}")
def test_same_answer_as_coredns(plain: tuple[CoreDNS, int], question: tuple[str, str]) -> None:
    coredns, port = plain
    assert summary(query(*question, port=port)) == summary(coredns.query(*question))


@pytest.mark.parametrize("question", WILD_QUESTIONS, ids=lambda q: f"{q[0]}/{q[1]}")
def test_wildcards_and_fallthrough_unsupported_as_coredns(wild: tuple[CoreDNS, int],
                                                          question: tuple[str, str]) -> None:
    coredns, port = wild
    assert summary(query(*question, port=port)) == summary(coredns.query(*question))

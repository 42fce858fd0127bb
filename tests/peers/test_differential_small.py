"""The small plugins (whoami, chaos, bufsize, nsid, any, minimal, header, local, metadata,
timeouts, loadbalance's policies, cache's new options) compared with CoreDNS 1.15: the same
Corefile given to both, the same questions, the answers compared as the kubernetes corpus
compares them (rcode, flags, the sections in any order, TTLs), the flags with RD and the
additional section with the EDNS NSID option, which these plugins change.

Every difference must be one that docs/divergences.md lists under a ``- `small/CASE`: aspects``
line, and every one listed must still differ so. The figures are printed at the end of the
pytest run. Each question goes to both servers from the same local port (whoami answers with it).
"""

from __future__ import annotations

import socket
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rdataclass
import dns.rdatatype
import pytest

from testkit.coredns import CoreDNS
from testkit.servers import LOOPBACK, free_port, interkube_process

from differential_corpus import Case, Result, check_comparison, summarize

pytestmark = pytest.mark.peers

COMPARISON = "small"

#: Names relative to each block's zone (both file plugins read it with the block's origin).
ZONE = """\
@ 3600 IN SOA ns admin 1 7200 3600 1209600 300
@ 3600 IN NS ns
ns 3600 IN A 192.0.2.53
www 300 IN A 192.0.2.1
www 300 IN A 192.0.2.2
www 300 IN A 192.0.2.3
www 300 IN AAAA 2001:db8::1
alias 300 IN CNAME www
sub 300 IN NS ns.sub
ns.sub 300 IN A 192.0.2.54
mx 300 IN MX 10 www
"""
WEIGHTS = "www.lb.test\n192.0.2.1 3\n192.0.2.2 1\n"
#: hosts entries for big.bufsize.test: 90 addresses, an answer of about 1.5 KB.
BIG = "\n".join(f"            198.51.100.{i} big.bufsize.test" for i in range(1, 91))


def corefile(p: str, work: Path) -> str:
    """Both servers' Corefile; ``p`` is ``:PORT`` for interkube (CoreDNS takes -dns.port)."""
    db = work / "zone.db"
    return textwrap.dedent(f"""\
        whoami.test{p} {{
            bind 127.0.0.1
            whoami
        }}
        version.bind{p} version.server{p} authors.bind{p} hostname.bind{p} id.server{p} {{
            bind 127.0.0.1
            chaos test-1.0 carol alice bob
        }}
        any.test{p} {{
            bind 127.0.0.1
            any
            file {db}
        }}
        localhost{p} 0.in-addr.arpa{p} 127.in-addr.arpa{p} 255.in-addr.arpa{p} local.test{p} {{
            bind 127.0.0.1
            local
        }}
        noprefix.test{p} {{
            bind 127.0.0.1
            local {{
                localhost_prefix off
            }}
        }}
        minimal.test{p} {{
            bind 127.0.0.1
            minimal
            file {db}
        }}
        header.test{p} {{
            bind 127.0.0.1
            header {{
                response set ra
                response clear rd
            }}
            hosts {work / "hosts"} {{
                192.0.2.9 www.header.test
            }}
        }}
        hq.test{p} {{
            bind 127.0.0.1
            header {{
                query clear rd
            }}
            hosts {work / "hosts"} {{
                192.0.2.9 www.hq.test
            }}
        }}
        bufsize.test{p} {{
            bind 127.0.0.1
            bufsize 1232
            hosts {work / "hosts"} {{
        __BIG__
                192.0.2.9 www.bufsize.test
            }}
        }}
        nsid.test{p} {{
            bind 127.0.0.1
            nsid test server
            minimal
            file {db}
        }}
        meta.test{p} {{
            bind 127.0.0.1
            metadata
            timeouts {{
                read 10s
                idle 30s
                maxtcpqueries 100
            }}
            minimal
            file {db}
        }}
        lb.test{p} {{
            bind 127.0.0.1
            loadbalance weighted {work / "weights"}
            minimal
            file {db}
        }}
        prefer.test{p} {{
            bind 127.0.0.1
            loadbalance round_robin {{
                prefer 192.0.2.2/32
            }}
            minimal
            file {db}
        }}
        cache.test{p} {{
            bind 127.0.0.1
            cache {{
                success 0
                denial 0
                serve_stale 1h immediate 30s 30s
                serve_stale_policy prefer_positive
            }}
            minimal
            file {db}
        }}
        """).replace("__BIG__", BIG.lstrip())


@dataclass(frozen=True)
class Ask:
    """One question, sent alike to both servers."""

    id: str
    name: str
    qtype: str = "A"
    qclass: str = "IN"
    tcp: bool = False
    edns: int | None = None         # the EDNS payload size; None: no OPT record
    nsid: bool = False              # an NSID option in the OPT record
    rd: bool = True

    def case(self) -> Case:
        return Case(self.id, self.name, self.qtype, tcp=self.tcp, edns=self.edns, group=self.id.split("-")[0])


ASKS: tuple[Ask, ...] = (
    Ask("whoami-a", "whoami.test"), Ask("whoami-aaaa-mixed", "WhoAmI.Test", "AAAA"),
    Ask("whoami-txt-tcp", "x.whoami.test", "TXT", tcp=True), Ask("whoami-edns", "whoami.test", edns=1232),
    Ask("chaos-version", "version.bind", "TXT", "CH"), Ask("chaos-version-server", "Version.Server", "TXT", "CH"),
    Ask("chaos-authors", "authors.bind", "TXT", "CH"), Ask("chaos-hostname", "hostname.bind", "TXT", "CH"),
    Ask("chaos-id", "id.server", "TXT", "CH", edns=1232), Ask("chaos-class-in", "version.bind", "TXT"),
    Ask("chaos-type-a", "version.bind", "A", "CH"),
    Ask("any-any", "www.any.test", "ANY"), Ask("any-any-mixed", "WWW.Any.Test", "ANY", edns=1232),
    Ask("any-any-ch", "www.any.test", "ANY", "CH"), Ask("any-a", "www.any.test", "A"),
    Ask("any-missing", "nope.any.test", "ANY"),
    *(Ask(f"local-{i}", name, qtype) for i, (name, qtype) in enumerate((
        ("localhost", "A"), ("LocalHost", "AAAA"), ("localhost", "SOA"), ("localhost", "NS"), ("localhost", "MX"),
        ("a.b.localhost", "A"), ("a.localhost", "TXT"), ("localhost.local.test", "AAAA"),
        ("localhost.local.test", "MX"), ("127.in-addr.arpa", "NS"), ("0.in-addr.arpa", "A"),
        ("255.in-addr.arpa", "SOA"), ("1.0.0.127.in-addr.arpa", "PTR"), ("1.0.0.127.in-addr.arpa", "A"),
        ("2.0.0.127.IN-ADDR.arpa", "PTR"), ("1.0.0.0.in-addr.arpa", "PTR"), ("localhost", "A")))),
    Ask("local-noprefix-legacy", "localhost.noprefix.test"), Ask("local-noprefix-sub", "x.localhost"),
    Ask("minimal-answer", "www.minimal.test", edns=1232), Ask("minimal-ns", "minimal.test", "NS"),
    Ask("minimal-nodata", "www.minimal.test", "TXT"), Ask("minimal-nxdomain", "nope.minimal.test"),
    Ask("minimal-delegation", "x.sub.minimal.test"), Ask("minimal-cname", "alias.minimal.test"),
    Ask("header-response", "www.header.test"), Ask("header-response-nord", "www.header.test", rd=False),
    Ask("header-servfail", "nope.header.test"), Ask("header-query", "www.hq.test"),
    Ask("bufsize-big-4096", "big.bufsize.test", edns=4096), Ask("bufsize-big-1000", "big.bufsize.test", edns=1000),
    Ask("bufsize-big-tcp", "big.bufsize.test", tcp=True, edns=4096),
    Ask("bufsize-small", "www.bufsize.test", edns=4096),
    Ask("nsid-asked", "www.nsid.test", edns=1232, nsid=True), Ask("nsid-not-asked", "www.nsid.test", edns=1232),
    Ask("nsid-nxdomain", "nope.nsid.test", edns=1232, nsid=True),
    Ask("nsid-tcp", "www.nsid.test", tcp=True, edns=1232, nsid=True),
    Ask("meta-a", "www.meta.test"), Ask("meta-tcp", "www.meta.test", "AAAA", tcp=True),
    Ask("lb-weighted", "www.lb.test"), Ask("lb-prefer", "www.prefer.test"),
    Ask("cache-a", "www.cache.test"), Ask("cache-nxdomain", "nope.cache.test"),
)


def exchange(port: int, ask: Ask, source_port: int) -> dns.message.Message | None:
    """Ask ``ask`` at 127.0.0.1:port from ``source_port``; None when nothing came back."""
    options = [dns.edns.GenericOption(dns.edns.OptionType.NSID, b"")] if ask.nsid else None
    q = dns.message.make_query(ask.name, dns.rdatatype.RdataType.make(ask.qtype),
                               dns.rdataclass.from_text(ask.qclass), use_edns=ask.edns is not None,
                               payload=ask.edns or 512, options=options)
    if not ask.rd:
        q.flags &= ~dns.flags.RD
    kind = socket.SOCK_STREAM if ask.tcp else socket.SOCK_DGRAM
    for _ in range(2):
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((LOOPBACK, source_port))
            try:
                if ask.tcp:
                    sock.settimeout(3)
                    sock.connect((LOOPBACK, port))
                    return dns.query.tcp(q, LOOPBACK, port=port, timeout=3, sock=sock)
                return dns.query.udp(q, LOOPBACK, port=port, timeout=3, sock=sock, ignore_unexpected=True)
            except (dns.exception.Timeout, OSError):
                continue
    return None


def summary(msg: dns.message.Message | None) -> dict[str, Any]:
    """The corpus's summary, with RD among the flags and the NSID option in the additional
    section (the parts these plugins change that the corpus does not look at)."""
    out = summarize(msg)
    if msg is None:
        return out
    out["flags"] = [*out["flags"], *(["rd"] if msg.flags & dns.flags.RD else [])]
    nsid = [o for o in msg.options if o.otype == dns.edns.OptionType.NSID]
    out["additional"] = sorted([*out["additional"], *(f"NSID {o.to_wire()!r}" for o in nsid)])
    return out


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("small-differential")
    (work / "zone.db").write_text(ZONE)
    (work / "hosts").write_text("")  # the hosts plugin would otherwise read /etc/hosts
    (work / "weights").write_text(WEIGHTS)
    return work


@pytest.fixture(scope="module")
def results(work: Path, coredns_binary: Path) -> Iterator[list[Result]]:
    port = free_port()
    (work / "Corefile").write_text(corefile(f":{port}", work))
    with CoreDNS(coredns_binary, corefile("", work), work / "coredns", probe_name="whoami.test.") as peer, \
            interkube_process(work / "Corefile", port):
        out = []
        for ask in ASKS:
            source = free_port()
            theirs, ours = exchange(peer.port, ask, source), exchange(port, ask, source)
            out.append(Result(ask.case(), ask.name, summary(theirs), summary(ours)))
        yield out


def test_the_small_plugins_answer_as_coredns_or_as_documented(
        results: list[Result], peer_report: Callable[[str], None]) -> None:
    check_comparison("small plugins differential", results, COMPARISON, peer_report)


def test_the_comparison_means_something(results: list[Result]) -> None:
    # Both servers answering SERVFAIL everywhere would be "identical": most answers hold records.
    assert len({a.id for a in ASKS}) == len(ASKS)
    assert not [r.case.id for r in results if r.interkube["rcode"] == "no answer"]
    identical = [r for r in results if not r.differs]
    assert len(identical) >= 0.8 * len(results)
    assert sum(1 for r in identical if r.interkube["answer"] or r.interkube["additional"]) >= 0.5 * len(identical)

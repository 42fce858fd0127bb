"""The view plugin compared with CoreDNS 1.15: one Corefile for both, with the view README's
examples (client networks, A/AAAA to one upstream and the rest to another, names by regular
expression; the networks moved onto loopback, the upstreams two dnsmasq on loopback) and the
rest of what views decide on (the fallback to a shorter zone, a zone without a default block,
a default block written first, several expr lines, the query's transport, EDNS size and DO bit,
ID, the server's address, metadata), the same questions sent to both from the same client
addresses (127.0.0.1, 127.0.0.2, 127.0.0.3, ::1), the answers compared as the kubernetes corpus
compares them.

Every difference must be one that docs/divergences.md lists under a ``- `view/CASE`: aspects``
line, and every one listed must still differ so. The figures are printed at the end of the
pytest run.
"""

from __future__ import annotations

import socket
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rdatatype
import pytest

from testkit.coredns import CoreDNS
from testkit.servers import dnsmasq, free_port, interkube_process

from differential_corpus import Case, Result, check_comparison, summarize

pytestmark = pytest.mark.peers

COMPARISON = "view"
SOURCES = ("127.0.0.1", "127.0.0.2", "127.0.0.3", "::1")


def corefile(p: str, one: int, two: int, six: int) -> str:
    """Both servers' Corefile; ``p`` is ``:PORT`` for interkube (CoreDNS takes -dns.port);
    ``one``, ``two`` and ``six`` the ports of the dnsmasq standing for the README's 10.0.0.1,
    10.0.0.2 and 10.0.0.6."""
    b = "bind 127.0.0.1 ::1"
    return textwrap.dedent(f"""\
        split.test{p} {{
            {b}
            view example1 {{
                expr incidr(client_ip(), '127.0.0.2/32')
            }}
            hosts {{
                1.1.1.1 www.split.test
            }}
        }}
        split.test{p} {{
            {b}
            view example2 {{
                expr incidr(client_ip(), '127.0.0.3/32')
            }}
            hosts {{
                2.2.2.2 www.split.test
            }}
        }}
        split.test{p} {{
            {b}
            view v6_example1 {{
                expr incidr(client_ip(), '::1/128')
            }}
            hosts {{
                2001:0DB8::1 www.split.test
            }}
        }}
        split.test{p} {{
            {b}
            hosts {{
                3.3.3.3 www.split.test www.sub.split.test
            }}
        }}
        sub.split.test{p} {{
            {b}
            view never {{
                expr false
            }}
            whoami
        }}
        only.test{p} {{
            {b}
            view inside {{
                expr client_ip() in ['127.0.0.2', '127.0.0.3']
            }}
            hosts {{
                10.1.0.10 www.only.test
            }}
        }}
        shadow.test{p} {{
            {b}
            hosts {{
                192.0.2.1 www.shadow.test
            }}
        }}
        shadow.test{p} {{
            {b}
            view hidden {{
                expr incidr(client_ip(), '127.0.0.0/8')
            }}
            hosts {{
                192.0.2.2 www.shadow.test
            }}
        }}
        type.test{p} {{
            {b}
            view example {{
                expr type() in ['A', 'AAAA']
            }}
            forward . 127.0.0.1:{six}
        }}
        type.test{p} {{
            {b}
            forward . 127.0.0.1:{one}
        }}
        example.com{p} {{
            {b}
            view example {{
                expr name() matches '^abc\\\\..*\\\\.example\\\\.com\\\\.$'
            }}
            forward . 127.0.0.1:{two}
        }}
        example.com{p} {{
            {b}
            forward . 127.0.0.1:{one}
        }}
        multi.test{p} {{
            {b}
            view tcp_txt {{
                expr type() == 'TXT' && proto() == 'tcp'
                expr incidr(client_ip(), '127.0.0.2/31') and not (client_ip() endsWith '.3')
            }}
            template IN TXT {{
                answer "{{{{ .Name }}}} 60 IN TXT \\"view\\""
            }}
        }}
        multi.test{p} {{
            {b}
            template IN TXT A {{
                answer "{{{{ .Name }}}} 60 IN TXT \\"default\\""
            }}
        }}
        ops.test{p} {{
            {b}
            view big {{
                expr bufsize() >= 4096 && do() == true && opcode() == 0 && class() == 'IN'
            }}
            hosts {{
                192.0.2.40 www.ops.test
            }}
        }}
        ops.test{p} {{
            {b}
            view six {{
                expr server_ip() == '::1' && server_port() != '53' && port() != '0'
            }}
            hosts {{
                192.0.2.46 www.ops.test
            }}
        }}
        ops.test{p} {{
            {b}
            view id {{
                expr id() == 4242 || (name() == 'id.ops.test.' && size() > 35)
            }}
            hosts {{
                192.0.2.42 www.ops.test id.ops.test
            }}
        }}
        ops.test{p} {{
            {b}
            hosts {{
                192.0.2.1 www.ops.test id.ops.test
            }}
        }}
        meta.test{p} {{
            {b}
            view meta {{
                expr metadata('view/name') == 'meta' && client_ip() != '127.0.0.3'
            }}
            metadata
            hosts {{
                192.0.2.50 www.meta.test
            }}
        }}
        meta.test{p} {{
            {b}
            view nometa {{
                expr metadata('view/name') == '' && type() not in ['A']
            }}
            hosts {{
                2001:db8::50 www.meta.test
            }}
        }}
        meta.test{p} {{
            {b}
            hosts {{
                192.0.2.5 www.meta.test
            }}
        }}
        """)


@dataclass(frozen=True)
class Ask:
    """One question, sent alike to both servers from ``source``."""

    id: str
    name: str
    qtype: str = "A"
    source: str = "127.0.0.1"
    tcp: bool = False
    edns: int | None = None
    do: bool = False
    qid: int | None = None

    def case(self) -> Case:
        return Case(self.id, self.name, self.qtype, tcp=self.tcp, edns=self.edns, group=self.id.split("-")[0])


def _from_each(prefix: str, name: str, qtype: str = "A", **kw: object) -> tuple[Ask, ...]:
    return tuple(Ask(f"{prefix}-{s.replace('.', '').replace(':', '')}", name, qtype, s, **kw)  # type: ignore[arg-type]
                 for s in SOURCES)


ASKS: tuple[Ask, ...] = (
    *_from_each("split-a", "www.split.test"), *_from_each("split-aaaa", "www.split.test", "AAAA"),
    *_from_each("split-tcp", "WWW.Split.Test", tcp=True),
    *_from_each("fallback", "www.sub.split.test"),
    *_from_each("only", "www.only.test"), Ask("only-other", "other.test", source="127.0.0.2"),
    *_from_each("shadow", "www.shadow.test"),
    Ask("type-a", "www.type.test"), Ask("type-aaaa", "www.type.test", "AAAA"),
    Ask("type-txt", "www.type.test", "TXT"), Ask("type-mx", "www.type.test", "MX", source="127.0.0.2"),
    # (UDP: a dnsmasq in the foreground answers one TCP connection at a time, and CoreDNS keeps
    # its connection to an upstream open for 10 s)
    Ask("type-a-six", "www.type.test", source="::1"),
    Ask("regex-match", "abc.x.example.com"), Ask("regex-deep", "ABC.x.Y.z.example.com", "TXT"),
    Ask("regex-bare", "abc.example.com"), Ask("regex-inner", "www.abc.x.example.com"),
    Ask("regex-aaaa", "abc.q.example.com", "AAAA", source="::1"),
    Ask("multi-match", "www.multi.test", "TXT", "127.0.0.2", tcp=True),
    Ask("multi-udp", "www.multi.test", "TXT", "127.0.0.2"),
    Ask("multi-client", "www.multi.test", "TXT", "127.0.0.3", tcp=True),
    Ask("multi-client1", "www.multi.test", "TXT", "127.0.0.1", tcp=True),
    Ask("multi-type", "www.multi.test", "A", "127.0.0.2", tcp=True),
    Ask("ops-big", "www.ops.test", edns=4096, do=True), Ask("ops-big-nodo", "www.ops.test", edns=4096),
    Ask("ops-small", "www.ops.test", edns=1232, do=True), Ask("ops-tcp", "www.ops.test", tcp=True, edns=512, do=True),
    Ask("ops-six", "www.ops.test", source="::1"), Ask("ops-six-tcp", "www.ops.test", source="::1", tcp=True),
    Ask("ops-id", "www.ops.test", qid=4242), Ask("ops-id-other", "www.ops.test", qid=4243),
    Ask("ops-size", "id.ops.test", edns=1232), Ask("ops-size-small", "id.ops.test"),
    *_from_each("meta-a", "www.meta.test"), *_from_each("meta-aaaa", "www.meta.test", "AAAA"),
)


def exchange(port: int, ask: Ask) -> dns.message.Message | None:
    """Ask ``ask`` at the server's address of the source's family; None when nothing came back."""
    q = dns.message.make_query(ask.name, dns.rdatatype.RdataType.make(ask.qtype), use_edns=ask.edns is not None,
                               payload=ask.edns or 512, want_dnssec=ask.do)
    if ask.qid is not None:
        q.id = ask.qid
    server = "::1" if ":" in ask.source else "127.0.0.1"
    for _ in range(2):
        try:
            if ask.tcp:
                return dns.query.tcp(q, server, port=port, timeout=3, source=ask.source)
            return dns.query.udp(q, server, port=port, timeout=3, source=ask.source, ignore_unexpected=True)
        except (dns.exception.Timeout, OSError):
            continue
    return None


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, coredns_binary: Path) -> Iterator[list[Result]]:
    if not _ipv6_loopback():
        pytest.skip("no IPv6 loopback (::1) on this host")
    work = tmp_path_factory.mktemp("view-differential")
    ports = [free_port() for _ in range(3)]
    answers = {n: {"www.type.test": [f"192.0.2.{n}", f"2001:db8::{n}"],
                   "abc.x.example.com": [f"198.51.100.{n}"], "abc.example.com": [f"198.51.100.{n}"],
                   "www.abc.x.example.com": [f"198.51.100.{n}"], "abc.x.y.z.example.com": [f"198.51.100.{n}"],
                   "abc.q.example.com": [f"2001:db8:100::{n}"]} for n in (1, 2, 6)}
    txt = {n: (f"--txt-record=www.type.test,upstream {n}", f"--txt-record=abc.x.y.z.example.com,upstream {n}",
               f"--mx-host=www.type.test,mail{n}.type.test,10") for n in (1, 2, 6)}
    port = free_port()
    (work / "Corefile").write_text(corefile(f":{port}", *ports))
    with dnsmasq(ports[0], answers[1], extra=txt[1]), dnsmasq(ports[1], answers[2], extra=txt[2]), \
            dnsmasq(ports[2], answers[6], extra=txt[6]), \
            CoreDNS(coredns_binary, corefile("", *ports), work / "coredns", probe_name="www.split.test.") as peer, \
            interkube_process(work / "Corefile", port):
        yield [Result(ask.case(), f"{ask.name} from {ask.source}", summarize(exchange(peer.port, ask)),
                      summarize(exchange(port, ask))) for ask in ASKS]


def test_views_choose_blocks_as_coredns_does_or_as_documented(
        results: list[Result], peer_report: Callable[[str], None]) -> None:
    check_comparison(f"view differential (from {', '.join(SOURCES)})", results, COMPARISON, peer_report)


def test_the_comparison_means_something(results: list[Result]) -> None:
    # Every block answers some question: a server that ignored views would differ here.
    assert len({a.id for a in ASKS}) == len(ASKS)
    assert not [r.case.id for r in results if r.interkube["rcode"] == "no answer"]
    answered = {line for r in results for line in r.coredns["answer"]}
    for record in ("1.1.1.1", "2.2.2.2", "2001:db8::1", "3.3.3.3", "10.1.0.10", "192.0.2.6", "198.51.100.2",
                   "192.0.2.40", "192.0.2.46", "192.0.2.42", "192.0.2.50", '"view"'):
        assert any(line.endswith(" " + record) for line in answered), record
    assert sum(1 for r in results if r.coredns["rcode"] == "REFUSED") >= 3

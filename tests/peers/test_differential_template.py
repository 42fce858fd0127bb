"""interkube's template plugin and CoreDNS 1.15's answer the same questions from the same Corefile:
the examples of CoreDNS's template README (each a server block's templates here, in one server)
and a few more for what a template can print. Every difference must be one that
docs/divergences.md lists under a ``- `template/CASE`: aspects`` line, and every one listed must
still differ so. The figures (compared, identical, each divergence) are printed at the end of the
pytest run.

Both forward what no template answers to one dnsmasq on loopback, which knows google.com (the
target of the CNAME example) and the names the fallthrough examples pass on.
"""

from __future__ import annotations

import re
from collections.abc import Callable
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
from testkit.servers import dnsmasq, free_port, interkube_process

from differential_corpus import ASPECTS as ANSWER_ASPECTS
from differential_corpus import DIVERGENCES_DOC, coredns_version, summarize

pytestmark = pytest.mark.peers

#: The parts of an answer compared: the kubernetes corpus's, and the EDNS record (present, DO,
#: Extended DNS Errors), where `ederror` shows.
ASPECTS = (*ANSWER_ASPECTS, "edns")

ROOT_BLOCK = r"""
    template ANY ANY invalid {
        rcode NXDOMAIN
        authority "invalid. 60 {{ .Class }} SOA ns.invalid. hostmaster.invalid. (1 60 60 60 60)"
        ederror 21 "Blocked according to RFC2606"
    }
    template IN ANY example.com.dc1.example.com {
        rcode NXDOMAIN
        authority "{{ .Zone }} 60 IN SOA ns.example.com hostmaster.example.com (1 60 60 60 60)"
    }
    template IN ANY example.org {
        match "example\.org\.(dc1\.example\.org\.)$"
        rcode NXDOMAIN
        authority "{{ index .Match 1 }} 60 IN SOA ns.{{ index .Match 1 }} hostmaster.{{ index .Match 1 }} (
            1 60 60 60 60)"
        fallthrough
    }
    template IN A example {
        match (^|[.])ip-(?P<a>[0-9]*)-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$
        answer "{{ .Name }} 60 IN A {{ .Group.a }}.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
        fallthrough
    }
    template IN PTR in-addr.arpa {
        match ^(?P<d>[0-9]*)[.](?P<c>[0-9]*)[.](?P<b>[0-9]*)[.](?P<a>[0-9]*)[.]in-addr[.]arpa[.]$
        answer "{{ .Name }} 60 IN PTR ip-{{ .Group.a }}-{{ .Group.b }}-{{ .Group.c }}-{{ .Group.d }}.example."
    }
    template IN AAAA v6.example {
        match ^host-(?P<suffix>[0-9a-f]{1,4})[.]v6[.]example[.]$
        answer "{{ .Name }} 60 IN AAAA 2001:db8::{{ .Group.suffix }}"
    }
    template IN A example {
        match "^ip0a(?P<b>[a-f0-9]{2})(?P<c>[a-f0-9]{2})(?P<d>[a-f0-9]{2})[.]example[.]$"
        answer "{{ .Name }} 60 IN A 10.{{ parseInt .Group.b 16 8 }}.{{ parseInt .Group.c 16 8 -}}
            .{{ parseInt .Group.d 16 8 }}"
        fallthrough
    }
    template IN A example {
        match "^ip-(?P<a>10)-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]dc[.]example[.]$"
        match "^(?P<a>[0-9]*)[.](?P<b>[0-9]*)[.](?P<c>[0-9]*)[.](?P<d>[0-9]*)[.]ext[.]example[.]$"
        answer "{{ .Name }} 60 IN A {{ .Group.a}}.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
        fallthrough
    }
    template IN MX example {
        match ^ip-10-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$
        answer "{{ .Name }} 60 IN MX 10 {{ .Name }}"
        additional "{{ .Name }} 60 IN A 10.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
        authority  "example. 60 IN NS ns0.example."
        authority  "example. 60 IN NS ns1.example."
        additional "ns0.example. 60 IN A 203.0.113.8"
        additional "ns1.example. 60 IN A 198.51.100.8"
        fallthrough
    }
    template IN SRV example {
        match ^_(?P<service>[a-z]+)[.]_tcp[.](?P<host>[a-z0-9-]+)[.]example[.]$
        answer "{{ .Name }} 60 IN SRV 10 5 {{ if eq .Group.service \"https\" }}443{{ else }}80{{ end }}
            {{- \" \" }}{{ .Group.host }}.example."
    }
    template IN TXT whoami.example {
        answer "{{ .Name }} 0 IN TXT \"client {{ .Remote }}\""
    }
    template IN TXT q.example {
        answer "{{ .Name }} 60 IN TXT \"{{ .Question.Name }}\" \"{{ .Question.Qtype }} {{ .Question.Qclass }}\""
    }
    template IN TXT example {
        match ^t-(?P<word>[a-z]+)-(?P<hex>[0-9a-f]+)[.]example[.]$
        answer "{{ .Name }} 60 IN TXT \"{{ .Group.word }}\" \"{{ parseInt .Group.hex 16 16 }}\""
        answer "{{ .Name }} 60 IN TXT \"{{ printf `%05d|%x|%q|%v` (parseInt .Group.hex 16 16) .Group.word
            .Group.word .Match }}\" \"{{ .Group.missing }}|{{ index .Group `missing` }}\""
        answer "{{ .Name }} 60 IN TXT \"{{ .Type }} {{ .Class }} {{ .Zone }} {{ .Regex }}\" \"{{ .Group }}\""
        answer "{{ .Name }} 60 IN TXT \"{{ if eq .Group.word `yes` }}Y{{ else if .Group.hex }}N{{ end }}\""
        fallthrough
    }
    template IN NAPTR example {
        answer "{{ .Name }} 60 IN NAPTR not a naptr"
    }
    template IN MX kind.example {
        answer "{{ .Name }} 60 IN TXT \"{{ .Type }} {{ .Class }} {{ .Question.Qtype }}\""
    }
    template CH TXT version.bind {
        answer "version.bind. 0 CH TXT \"interkube\""
    }
    template IN ANY foogle.com {
        match "^foogle\.com\.$"
        answer "foogle.com 60 IN CNAME google.com"
    }
    forward . UPSTREAM
"""

#: (key, body) of each server block, all on one port.
BLOCKS = [
    (".", ROOT_BLOCK),
    ("nx.test", "\n    template ANY ANY {\n        rcode NXDOMAIN\n    }\n"),
    ("servfail.test", "\n    template IN A {\n        rcode SERVFAIL\n        ederror 3 \"stale\"\n    }\n"),
]
#: What the upstream (dnsmasq) knows.
UPSTREAM_RECORDS = {"google.com": ["192.0.2.202"], "www.example.org": ["192.0.2.203"],
                    "www.example.com": ["192.0.2.201"]}


def corefile(upstream: str, port: int | None = None) -> str:
    """The Corefile of both servers: CoreDNS takes its port from -dns.port, interkube from the keys."""
    suffix = f":{port}" if port else ""
    return "".join(f"{key}{suffix} {{\n    bind 127.0.0.1{body.replace('UPSTREAM', upstream)}}}\n"
                   for key, body in BLOCKS)


@dataclass(frozen=True)
class Case:
    id: str
    name: str
    qtype: str
    qclass: str = "IN"
    edns: bool = True
    do: bool = False
    tcp: bool = False


CASES = (
    Case("invalid-a", "foo.invalid", "A"),
    Case("invalid-a-do", "foo.invalid", "A", do=True),
    Case("invalid-a-noedns", "foo.invalid", "A", edns=False),
    Case("invalid-soa", "invalid", "SOA", do=True),
    Case("invalid-ch-txt", "a.b.invalid", "TXT", qclass="CH", do=True),
    Case("dc1-a", "www.example.com.dc1.example.com", "A"),
    Case("dc1-apex-aaaa", "example.com.dc1.example.com", "AAAA"),
    Case("dc1-forwarded", "www.example.com", "A"),
    Case("dc1-regex-mx", "a.example.org.dc1.example.org", "MX"),
    Case("dc1-regex-fallthrough", "www.example.org", "A"),
    Case("ip-a", "ip-10-1-2-3.example", "A"),
    Case("ip-a-noedns", "ip-10-1-2-3.example", "A", edns=False),
    Case("ip-a-tcp", "ip-10-1-2-3.example", "A", tcp=True),
    Case("ip-a-below", "www.ip-192-0-2-7.example", "A"),
    Case("ip-a-mixed-case", "IP-10-1-2-3.Example", "A"),
    Case("ip-ptr", "3.2.1.10.in-addr.arpa", "PTR"),
    Case("ip-ptr-nomatch", "x.in-addr.arpa", "PTR"),
    Case("ip-aaaa-not-templated", "ip-10-1-2-3.example", "AAAA"),
    Case("v6-aaaa", "host-1f.v6.example", "AAAA"),
    Case("v6-nomatch", "host-xyz.v6.example", "AAAA"),
    Case("hex-a", "ip0a7b7b7b.example", "A"),
    Case("multi-dc-a", "ip-10-1-2-3.dc.example", "A"),
    Case("multi-ext-a", "10.1.2.3.ext.example", "A"),
    Case("mx-sections", "ip-10-0-0-5.example", "MX"),
    Case("srv-https", "_https._tcp.web1.example", "SRV"),
    Case("srv-other", "_imap._tcp.mail-1.example", "SRV"),
    Case("whoami-txt", "whoami.example", "TXT"),
    Case("question-txt", "q.example", "TXT"),
    Case("txt-printf-yes", "t-yes-ff.example", "TXT"),
    Case("txt-printf-no", "t-no-7b.example", "TXT"),
    Case("txt-parseint-fails", "t-no-fffff.example", "TXT"),
    Case("rr-fails", "anything.example", "NAPTR"),
    Case("qtype-any", "x.kind.example", "ANY"),
    Case("version-bind", "version.bind", "TXT", qclass="CH"),
    Case("cname-a", "foogle.com", "A"),
    Case("cname-mx", "foogle.com", "MX"),
    Case("cname-aaaa", "foogle.com", "AAAA"),
    Case("cname-nomatch", "www.foogle.com", "A"),
    Case("nx-a", "anything.nx.test", "A"),
    Case("nx-txt", "nx.test", "TXT", edns=False),
    Case("servfail-a", "x.servfail.test", "A"),
    Case("servfail-aaaa-passes", "x.servfail.test", "AAAA"),
)


def ask(port: int, case: Case) -> dns.message.Message | None:
    q = dns.message.make_query(case.name, case.qtype, rdclass=case.qclass, use_edns=0 if case.edns else None,
                               want_dnssec=case.do)
    for _ in range(2):
        try:
            if case.tcp:
                return dns.query.tcp(q, "127.0.0.1", port=port, timeout=3)
            return dns.query.udp(q, "127.0.0.1", port=port, timeout=3, ignore_unexpected=True)
        except (dns.exception.Timeout, OSError):
            continue
    return None


def compared(msg: dns.message.Message | None) -> dict[str, Any]:
    out = summarize(msg)
    if msg is None:
        out["edns"] = "no answer"
    elif msg.edns < 0:
        out["edns"] = "no OPT"
    else:
        edes = [f"EDE {int(o.code)} {o.text!r}" for o in msg.options if isinstance(o, dns.edns.EDEOption)]
        out["edns"] = ["DO" if msg.ednsflags & dns.flags.DO else "no DO", *edes]
    return out


@dataclass
class Result:
    case: Case
    coredns: dict[str, Any]
    interkube: dict[str, Any]

    @property
    def differs(self) -> tuple[str, ...]:
        return tuple(a for a in ASPECTS if self.coredns[a] != self.interkube[a])

    def describe(self) -> str:
        c = self.case
        lines = [f"template/{c.id}: {c.name} {c.qclass} {c.qtype}{' tcp' if c.tcp else ''}"
                 f"{'' if c.edns else ' no-edns'}{' do' if c.do else ''}"]
        for a in self.differs:
            lines.append(f"    {a}: coredns {self.coredns[a]!r}")
            lines.append(f"    {' ' * len(a)}  interkube {self.interkube[a]!r}")
        return "\n".join(lines)


# --- what docs/divergences.md says ------------------------------------------------------------

_SECTION = re.compile(r"^## (D\d+)\. (.+)$", re.M)
_STATUS = re.compile(r"^Status: \*\*(\w+)\*\*", re.M)
_CASE = re.compile(r"^- `template/([a-z0-9-]+)`: ([a-z, ]+)$", re.M)


@dataclass(frozen=True)
class Divergence:
    key: str
    title: str
    status: str
    cases: dict[str, frozenset[str]]


def documented(path: Path = DIVERGENCES_DOC) -> list[Divergence]:
    """The sections of docs/divergences.md that list template cases."""
    text = path.read_text()
    heads = list(_SECTION.finditer(text))
    out = []
    for i, head in enumerate(heads):
        body = text[head.end():heads[i + 1].start() if i + 1 < len(heads) else len(text)]
        cases = {m.group(1): frozenset(a.strip() for a in m.group(2).split(",")) for m in _CASE.finditer(body)}
        if cases:
            status = _STATUS.search(body)
            out.append(Divergence(head.group(1), head.group(2), status.group(1) if status else "?", cases))
    return out


def judge(results: list[Result], divergences: list[Divergence]) -> tuple[list[Result], list[str]]:
    """The differences the document does not list, and what it lists that does not differ so."""
    allowed: dict[str, frozenset[str]] = {}
    for d in divergences:
        for case, aspects in d.cases.items():
            assert case not in allowed, f"template/{case} is listed twice in docs/divergences.md"
            assert aspects <= set(ASPECTS), f"{d.key}: template/{case}: unknown aspect {sorted(aspects - set(ASPECTS))}"
            allowed[case] = aspects
    ran = {r.case.id: r for r in results}
    undocumented = [r for r in results if set(r.differs) - allowed.get(r.case.id, frozenset())]
    stale = []
    for case, aspects in allowed.items():
        r = ran.get(case)
        if r is None:
            stale.append(f"template/{case}: not a case of tests/peers/test_differential_template.py")
        elif set(aspects) != set(r.differs):
            stale.append(f"template/{case}: listed as differing in {', '.join(sorted(aspects))}, "
                         f"differs in {', '.join(r.differs) or 'nothing'}")
    return undocumented, stale


def report(results: list[Result], divergences: list[Divergence], undocumented: list[Result]) -> str:
    identical = sum(1 for r in results if not r.differs)
    lines = [f"template differential: interkube vs CoreDNS {coredns_version()}",
             f"  queries compared: {len(results)}",
             f"  identical:        {identical}",
             f"  different:        {len(results) - identical} (documented: "
             f"{len(results) - identical - len(undocumented)}, undocumented: {len(undocumented)})"]
    by_case = {r.case.id: r for r in results}
    for d in divergences:
        seen = [c for c in d.cases if c in by_case and by_case[c].differs]
        lines.append(f"    {d.key} [{d.status}] {d.title} ({len(seen)}): {', '.join(seen)}")
    lines.extend("  UNDOCUMENTED " + r.describe().replace("\n", "\n    ") for r in undocumented)
    return "\n".join(lines)


def test_the_template_readme_examples_answer_as_coredns_or_as_documented(
        coredns: Callable[..., CoreDNS], peer_report: Callable[[str], None], tmp_path: Path) -> None:
    upstream_port = free_port()
    port = free_port()
    with dnsmasq(upstream_port, UPSTREAM_RECORDS):
        upstream = f"127.0.0.1:{upstream_port}"
        peer = coredns(corefile(upstream))
        path = tmp_path / "Corefile"
        path.write_text(corefile(upstream, port))
        with interkube_process(path, port):
            results = [Result(case, compared(ask(peer.port, case)), compared(ask(port, case))) for case in CASES]
    divergences = documented()
    undocumented, stale = judge(results, divergences)
    peer_report(report(results, divergences, undocumented))
    assert not undocumented, ("answers differ from CoreDNS's in ways docs/divergences.md does not list; fix "
                              "interkube or document the divergence:\n" + "\n".join(r.describe() for r in undocumented))
    assert not stale, "docs/divergences.md is out of date:\n" + "\n".join(stale)
    # A guard against a comparison that means nothing (both SERVFAIL everywhere would be identical).
    identical = [r for r in results if not r.differs]
    assert len(identical) >= 0.75 * len(results)
    assert sum(1 for r in identical if r.interkube["answer"]) >= 15
    assert not [r.case.id for r in results if r.interkube["rcode"] == "no answer"]

"""rewrite compared with CoreDNS 1.15: the same Corefile given to both servers, the same questions
to both, the answers compared.

One server block per scenario (its zone `<name>.test`), each with rewrite rules in front of data:
the file plugin serving one zone file under the block's zone, hosts entries, or forward to an
unbound on loopback serving `fwd.test`; and, against the test kube-apiserver, the kubernetes
plugin behind the usual `rewrite name foo.example.com foo.default.svc.cluster.local`. Compared:
rcode, flags, the question (letter for letter), the three sections (records in any order, names
in lower case, TTLs included), the EDNS options, and the letters of the answer's records for the
question's own name. Every difference must be one that docs/divergences.md lists (a line
``- `rewrite/CASE`: aspects`` in the section that explains it), and each listed case must still
differ in those aspects; the counts go to the peers' report.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from testkit.coredns import CoreDNS
from testkit.kubeapi import KubeAPI, KubeObjects
from testkit.peers import free_udp_tcp_port
from testkit.servers import free_port, in_process, unbound
from testkit.waiting import until

DIVERGENCES = Path(__file__).resolve().parents[2] / "docs" / "divergences.md"
ASPECTS = ("rcode", "flags", "question", "answer", "authority", "additional", "options", "letters")

#: The zone file every file-plugin block serves under its own zone (names relative to it).
ZONE = """\
@ 3600 IN SOA ns admin 1 7200 3600 1209600 300
@ 3600 IN NS ns
ns 3600 IN A 192.0.2.53
www 300 IN A 192.0.2.1
www 300 IN AAAA 2001:db8::1
sub.www 300 IN A 192.0.2.3
alias 300 IN CNAME www
ext 300 IN CNAME target.other.invalid.
_http._tcp.svc 300 IN SRV 10 50 80 www
_http._tcp.svc 300 IN SRV 20 50 8080 backend
backend 300 IN A 192.0.2.2
mx 300 IN MX 10 mail
mail 300 IN A 192.0.2.25
txt 300 IN TXT "hello"
app 300 IN CNAME app.cdn
app.cdn 300 IN A 20.2.0.1
app.other 100 IN A 30.3.1.2
app2 300 IN CNAME app2.mid
app2.mid 300 IN CNAME app2.cdn
app2.cdn 300 IN A 20.2.0.9
app2.other 100 IN A 30.3.1.9
"""
#: unbound's fwd.test.
FORWARDED = ["www.fwd.test. 300 IN A 192.0.2.1", "www.fwd.test. 300 IN AAAA 2001:db8::1",
             "alias.fwd.test. 300 IN CNAME www.fwd.test.", "ext.fwd.test. 300 IN CNAME www.other.test.",
             "_http._tcp.svc.fwd.test. 300 IN SRV 10 50 80 www.fwd.test.", "mx.fwd.test. 300 IN MX 10 www.fwd.test.",
             "app.fwd.test. 300 IN CNAME app.cdn.fwd.test.", "app.cdn.fwd.test. 300 IN A 20.2.0.1",
             "app.other.fwd.test. 100 IN A 30.3.1.2"]

#: A question: name, type, with EDNS, the EDNS options sent.
Question = tuple[str, str, bool, tuple[tuple[int, bytes], ...]]


def q(name: str, rdtype: str = "A", edns: bool = False, *opts: tuple[int, bytes]) -> Question:
    return (name, rdtype, edns, tuple(opts))


@dataclass(frozen=True)
class Scenario:
    """One server block: zone `<name>.test`, its directives (DB: the zone file, UP: unbound)."""

    name: str
    directives: tuple[str, ...]
    questions: tuple[Question, ...]


def file(name: str) -> str:
    return f"file DB {name}.test"


SCENARIOS = (
    Scenario("exact", ("rewrite name exact foo.exact.test www.exact.test", file("exact")),
             (q("foo.exact.test"), q("FoO.Exact.TEST", "A", True), q("foo.exact.test", "AAAA", True),
              q("foo.exact.test", "MX"), q("www.exact.test"), q("sub.foo.exact.test"), q("bar.exact.test"))),
    Scenario("prefix", ("rewrite name prefix pre www", file("prefix")),
             (q("pre.prefix.test"), q("Pre.Prefix.Test"), q("sub.pre.prefix.test"), q("pre-x.prefix.test"))),
    Scenario("prefixa", ("rewrite name prefix pre www answer auto", file("prefixa")),
             (q("pre.prefixa.test"), q("PRE.prefixa.test", "AAAA", True))),
    Scenario("sfx", ("rewrite name suffix .alias.sfx.test .sfx.test answer auto", file("sfx")),
             (q("www.alias.sfx.test"), q("WWW.Alias.Sfx.Test"), q("_http._tcp.svc.alias.sfx.test", "SRV", True),
              q("mx.alias.sfx.test", "MX"), q("alias.alias.sfx.test"), q("sub.www.alias.sfx.test"))),
    Scenario("sfxn", ("rewrite name suffix .alias.sfxn.test .sfxn.test", file("sfxn")),
             (q("www.alias.sfxn.test"), q("_http._tcp.svc.alias.sfxn.test", "SRV"))),
    Scenario("substr", ("rewrite name substring old www", file("substr")),
             (q("old.substr.test"), q("xold.substr.test"))),
    Scenario("rx", (r"rewrite name regex ^(.*)\.r\.rx\.test\.$ {1}.rx.test answer auto", file("rx")),
             (q("www.r.rx.test"), q("_http._tcp.svc.r.rx.test", "SRV"), q("alias.r.rx.test"),
              q("mx.r.rx.test", "MX", True), q("nope.r.rx.test"))),
    Scenario("rxn", (r"rewrite name regex ^(.*)-(x)\.rxn\.test\.$ {1}.rxn.test answer name ^(.*)\.rxn\.test\.$ "
                     r"{1}-x.rxn.test answer value ^(.*)\.rxn\.test\.$ {1}-x.rxn.test", file("rxn")),
             (q("www-x.rxn.test"), q("alias-x.rxn.test"), q("_http._tcp.svc-x.rxn.test", "SRV"),
              q("mx-x.rxn.test", "MX"))),
    Scenario("bad", (r"rewrite name regex ^(.*)\.bad\.test\.$ {1}..bad.test", file("bad")), (q("www.bad.test"),)),
    Scenario("cont", ("rewrite continue name exact a.cont.test b.cont.test",
                      "rewrite name exact b.cont.test www.cont.test", file("cont")),
             (q("a.cont.test"), q("b.cont.test"), q("A.Cont.Test", "AAAA"))),
    Scenario("typ", ("rewrite type AAAA A", file("typ")), (q("www.typ.test", "AAAA"), q("www.typ.test"))),
    Scenario("typc", ("rewrite continue type AAAA A", file("typc")), (q("www.typc.test", "AAAA"),)),
    Scenario("ttl", (r"rewrite ttl regex (.*)\.ttl\.test 15", file("ttl")),
             (q("www.ttl.test"), q("alias.ttl.test"), q("nx.ttl.test"), q("ttl.test", "NS"))),
    Scenario("ttlr", ("rewrite ttl suffix ttlr.test. 100-200", file("ttlr")), (q("www.ttlr.test"), q("ns.ttlr.test"))),
    Scenario("ttlx", ("rewrite ttl ttlx.test 5", file("ttlx")), (q("ttlx.test", "SOA", True), q("ttlx.test", "NS"))),
    Scenario("rc", ("rewrite rcode suffix rc.test NXDOMAIN NOERROR", file("rc")), (q("nx.rc.test"), q("www.rc.test"))),
    Scenario("rc2", ("rewrite rcode regex .* NXDOMAIN 3", file("rc2")), (q("nx.rc2.test"),)),
    Scenario("cls", ("rewrite class CH IN", file("cls")), (q("www.cls.test"),)),
    Scenario("ansv", (r"rewrite name suffix .a.ansv.test .ansv.test answer value (.*)\.ansv\.test\. {1}.v.ansv.test",
                      file("ansv")),
             (q("alias.a.ansv.test"), q("mx.a.ansv.test", "MX"), q("_http._tcp.svc.a.ansv.test", "SRV"),
              q("ansv.a.ansv.test", "NS"), q("ansv.a.ansv.test", "SOA"))),
    Scenario("cn", (r"rewrite cname regex (.*)\.cdn\.cn\.test\. {1}.other.cn.test.", file("cn")),
             (q("app.cn.test"), q("app2.cn.test"), q("www.cn.test"), q("app.cn.test", "AAAA"))),
    Scenario("cnx", ("rewrite cname exact app.cdn.cnx.test. app.other.cnx.test.", file("cnx")),
             (q("app.cnx.test"), q("App.Cnx.Test", "A", True))),
    Scenario("cns", ("rewrite cname suffix .cdn.cns.test. .other.cns.test.", file("cns")),
             (q("app.cns.test"), q("app2.cns.test"))),
    Scenario("el", ("rewrite edns0 local set 0xffee 0x61626364", file("el")),
             (q("www.el.test"), q("www.el.test", "A", True), q("www.el.test", "A", True, (0xFFEE, b"zz")),
              q("nx.el.test", "A", True))),
    Scenario("elr", ("rewrite edns0 local set 0xffee abcd revert", file("elr")),
             (q("www.elr.test", "A", True), q("www.elr.test", "A", True, (0xFFEE, b"zz")))),
    Scenario("elc", ("rewrite continue edns0 local set 0xffee abcd", "rewrite edns0 local replace 0xffee bcde revert",
                     file("elc")),
             (q("www.elc.test", "A", True), q("www.elc.test"))),
    Scenario("ela", ("rewrite edns0 local append 0xffee abcd", file("ela")),
             (q("www.ela.test", "A", True), q("www.ela.test", "A", True, (0xFFEE, b"zz")))),
    Scenario("elrep", ("rewrite edns0 local replace 0xffee abcd", file("elrep")),
             (q("www.elrep.test", "A", True), q("www.elrep.test", "A", True, (0xFFEE, b"zz")), q("www.elrep.test"))),
    Scenario("elu", ("rewrite edns0 local unset 0xffee", file("elu")),
             (q("www.elu.test", "A", True, (0xFFEE, b"zz")), q("www.elu.test"))),
    Scenario("elv", ("rewrite continue edns0 local set 0xffe1 {qname}",
                     "rewrite continue edns0 local set 0xffe2 {qtype}",
                     "rewrite continue edns0 local set 0xffe3 {client_ip}",
                     "rewrite continue edns0 local set 0xffe4 {protocol}",
                     "rewrite edns0 local set 0xffe5 {server_ip}", file("elv")),
             (q("WwW.elv.test", "A", True),)),
    Scenario("nsid", ("rewrite edns0 nsid set", file("nsid")), (q("www.nsid.test", "A", True), q("www.nsid.test"))),
    Scenario("ecs", ("rewrite edns0 subnet set 24 56", file("ecs")), (q("www.ecs.test", "A", True), q("www.ecs.test"))),
    Scenario("edn", ("rewrite continue edns0 local set 0xffee abcd",
                     r"rewrite name regex ^foo\.(.*)$ www.{1} answer auto", file("edn")),
             (q("foo.edn.test", "A", True), q("www.edn.test", "A", True))),
    Scenario("stp", ("rewrite edns0 local set 0xffee abcd", "rewrite name exact foo.stp.test www.stp.test",
                     file("stp")),
             (q("foo.stp.test", "A", True),)),
    Scenario("ho", ("rewrite name exact foo.ho.test bar.ho.test",
                    "hosts {\n        192.0.2.7 bar.ho.test\n        fallthrough\n    }"),
             (q("foo.ho.test"), q("Foo.Ho.Test", "A", True), q("foo.ho.test", "AAAA"))),
    Scenario("typa", ("rewrite type ANY HINFO", "hosts {\n        192.0.2.7 bar.typa.test\n    }"),
             (q("bar.typa.test", "ANY"),)),
    Scenario("fx", ("rewrite name suffix .fx.test .fwd.test answer auto", "forward . UP"),
             (q("www.fx.test"), q("WWW.fx.test", "AAAA", True), q("alias.fx.test"), q("ext.fx.test"),
              q("_http._tcp.svc.fx.test", "SRV", True), q("mx.fx.test", "MX"), q("nx.fx.test", "A", True))),
    Scenario("fe", ("rewrite name exact foo.fe.test www.fwd.test", "forward . UP"),
             (q("foo.fe.test"), q("FOO.fe.test", "A", True), q("bar.fe.test"))),
    Scenario("fc", ("rewrite continue name suffix .fc.test .fwd.test answer auto",
                    r"rewrite cname regex (.*)\.cdn\.fwd\.test\. {1}.other.fwd.test.", "forward . UP"),
             (q("app.fc.test"), q("www.fc.test"))),
    Scenario("fel", ("rewrite continue edns0 local set 0xffee abcd",
                     "rewrite name suffix .fel.test .fwd.test answer auto", "forward . UP"),
             (q("www.fel.test", "A", True), q("www.fel.test"))),
    Scenario("felc", ("rewrite continue edns0 local set 0xffee abcd",
                      "rewrite name suffix .felc.test .fwd.test answer auto", "cache 30", "forward . UP"),
             (q("www.felc.test", "A", True), q("www.felc.test", "A", True))),
    Scenario("frc", ("rewrite continue name suffix .frc.test .fwd.test answer auto",
                     "rewrite rcode suffix fwd.test. NXDOMAIN NOERROR", "forward . UP"),
             (q("nx.frc.test"), q("www.frc.test"))),
    Scenario("fttl", ("rewrite continue name suffix .fttl.test .fwd.test answer auto",
                      "rewrite ttl suffix fwd.test. 10-20", "forward . UP"),
             (q("www.fttl.test", "A", True), q("nx.fttl.test", "A", True), q("alias.fttl.test"))),
    Scenario("fcache", ("rewrite name suffix .fcache.test .fwd.test answer auto", "cache 30", "forward . UP"),
             (q("www.fcache.test"), q("www.fcache.test"), q("alias.fcache.test", "A", True),
              q("ALIAS.fcache.test", "A", True))),
)

def case_id(scenario: Scenario, question: Question) -> str:
    name, rdtype, edns, opts = question
    return f"{scenario.name}:{name}:{rdtype}{':edns' if edns else ''}{':opt' if opts else ''}"


def corefile(port: str, db: Path, up: int, scenarios: tuple[Scenario, ...] = SCENARIOS) -> str:
    out = []
    for sc in scenarios:
        body = "".join(f"    {d.replace('DB', str(db)).replace('UP', f'127.0.0.1:{up}')}\n" for d in sc.directives)
        out.append(f"{sc.name}.test{port} {{\n    bind 127.0.0.1\n{body}}}\n")
    return "".join(out)


async def ask(port: int, question: Question) -> dns.message.Message | str:
    """One question over UDP; the answer read whatever its question (CoreDNS may answer another)."""
    name, rdtype, edns, opts = question
    msg = dns.message.make_query(name, rdtype, use_edns=0 if edns else None,
                                 options=[dns.edns.GenericOption(code, data) for code, data in opts])
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect(("127.0.0.1", port))
        await loop.sock_sendall(sock, msg.to_wire())
        try:
            wire = await asyncio.wait_for(loop.sock_recv(sock, 65535), 5)
        except TimeoutError:
            return "no answer"
    return dns.message.from_wire(wire)


def _record(rrset: Any, rd: Any) -> str:
    rdata = rd.to_text()
    if rrset.rdtype == dns.rdatatype.SOA:  # the serial differs by design (D5)
        parts = rdata.split()
        parts[2] = "SERIAL"
        rdata = " ".join(parts)
    return f"{rrset.name} {rrset.ttl} {dns.rdatatype.to_text(rrset.rdtype)} {rdata}".lower()


def shape(msg: dns.message.Message | str) -> dict[str, Any]:
    """What is compared of an answer."""
    if isinstance(msg, str):
        return {a: msg for a in ASPECTS}
    question = msg.question[0] if msg.question else None

    def records(section: list[Any]) -> list[str]:
        return sorted(_record(rs, rd) for rs in section for rd in rs)

    return {
        "rcode": dns.rcode.to_text(msg.rcode()),
        "flags": sorted(f for f in ("AA", "TC", "RD", "RA") if msg.flags & dns.flags.Flag[f]),
        "question": f"{question.name} {dns.rdatatype.to_text(question.rdtype)}" if question is not None else "",
        "answer": records(msg.answer),
        "authority": records(msg.authority),
        "additional": records(msg.additional),
        "options": sorted((int(o.otype), o.to_wire().hex()) for o in msg.options) if msg.edns >= 0 else None,
        "letters": sorted({rs.name.to_text() for rs in msg.answer
                           if question is not None and rs.name == question.name}),
    }


@dataclass
class Compared:
    case: str
    coredns: dict[str, Any]
    interkube: dict[str, Any]

    @property
    def differs(self) -> list[str]:
        return [a for a in ASPECTS if self.coredns[a] != self.interkube[a]]


_SECTION = re.compile(r"^## (D\d+)\. ", re.M)
_CASE = re.compile(r"^- `rewrite/([^`]+)`: ([a-z, ]+)$", re.M)


def documented() -> dict[str, tuple[str, frozenset[str]]]:
    """The cases docs/divergences.md explains: case id -> (its section, the aspects that differ),
    from lines ``- `rewrite/CASE`: aspect, aspect``."""
    text = DIVERGENCES.read_text()
    heads = list(_SECTION.finditer(text))
    out = {}
    for i, head in enumerate(heads):
        body = text[head.end():heads[i + 1].start() if i + 1 < len(heads) else len(text)]
        for m in _CASE.finditer(body):
            aspects = frozenset(a.strip() for a in m.group(2).split(","))
            assert aspects <= set(ASPECTS), f"{head.group(1)}: {m.group(1)}: unknown aspects {aspects}"
            out[m.group(1)] = (head.group(1), aspects)
    return out


def verdict(results: list[Compared], title: str, peer_report: Callable[[str], None]) -> list[Compared]:
    """Report the counts; fail on a difference not documented, or a documented one gone."""
    doc = {case: v for case, v in documented().items() if case.split(":", 1)[0] in {r.case.split(":", 1)[0]
                                                                                     for r in results}}
    different = [r for r in results if r.differs]
    lines = [f"{title}: {len(results) - len(different)} identical, {len(different)} different (of {len(results)})"]
    lines += [f"  {r.case}: {', '.join(r.differs)} ({doc[r.case][0] if r.case in doc else 'UNDOCUMENTED'})"
              for r in different]
    peer_report("\n".join(lines))
    undocumented = [r for r in different if not set(r.differs) <= doc.get(r.case, ("", frozenset()))[1]]
    assert not undocumented, "\n".join(
        f"{r.case}:\n" + "\n".join(f"  {a}: coredns {r.coredns[a]!r}\n  {' ' * len(a)}  interkube {r.interkube[a]!r}"
                                   for a in r.differs) for r in undocumented)
    ran = {r.case: r for r in results}
    stale = [case for case, (_, aspects) in doc.items() if case not in ran or set(ran[case].differs) != aspects]
    assert not stale, f"docs/divergences.md lists differences that are gone (or differ otherwise): {stale}"
    return different


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    port = free_port()
    with unbound(port, FORWARDED, zone="fwd.test.", zone_type="static"):
        yield port


async def test_rewrite_answers_as_coredns_does(upstream: int, coredns: Callable[..., CoreDNS],
                                               peer_report: Callable[[str], None], tmp_path: Path) -> None:
    db = tmp_path / "zone.db"
    db.write_text(ZONE)
    theirs = coredns(corefile("", db, upstream), probe_name=f"{SCENARIOS[0].name}.test.")
    port = free_udp_tcp_port()
    results: list[Compared] = []
    async with in_process(corefile(f":{port}", db, upstream)):
        for sc in SCENARIOS:
            for question in sc.questions:
                cd, ik = await asyncio.gather(ask(theirs.port, question), ask(port, question))
                results.append(Compared(case_id(sc, question), shape(cd), shape(ik)))
    verdict(results, "rewrite vs CoreDNS 1.15", peer_report)
    # Not a corpus of failures: most answers hold records.
    assert sum(1 for r in results if r.interkube["rcode"] == "NOERROR" and r.interkube["answer"]) >= 60


#: The kubernetes plugin behind rewrite (CoreDNS's most common use of it).
KUBE_RULES = ("rewrite name foo.example.com web.{ns}.svc.cluster.local",
              "rewrite name suffix .example.net. .{ns}.svc.cluster.local. answer auto",
              r"rewrite name regex ^(.+)\.rx\.example\.org\.$ {{1}}.{ns}.svc.cluster.local answer auto")
KUBE_QUESTIONS = (q("foo.example.com"), q("Foo.Example.Com", "A", True), q("foo.example.com", "AAAA"),
                  q("web.example.net"), q("_http._tcp.web.example.net", "SRV"), q("hl.example.net"),
                  q("_http._tcp.hl.example.net", "SRV", True), q("pet-0.hl.example.net"), q("ext.example.net"),
                  q("ext.example.net", "A", True), q("gone.example.net"), q("web.rx.example.org"),
                  q("_http._tcp.hl.rx.example.org", "SRV"), q("web.cluster.local"))


@contextlib.asynccontextmanager
async def kube_pair(coredns: Callable[..., CoreDNS], kubeconfig: Path, ns: str):  # type: ignore[no-untyped-def]
    rules = "".join(f"    {r.format(ns=ns)}\n" for r in KUBE_RULES)
    stanza = f"    kubernetes cluster.local {{\n        kubeconfig {kubeconfig}\n    }}\n"
    theirs = coredns(f".  {{\n    bind 127.0.0.1\n{rules}{stanza}}}\n", probe_name="cluster.local.")
    port = free_udp_tcp_port()
    async with in_process(f".:{port} {{\n    bind 127.0.0.1\n{rules}{stanza}}}\n"):
        yield theirs.port, port


async def test_rewrite_in_front_of_kubernetes_answers_as_coredns_does(
        kube_api: KubeAPI, kube: KubeObjects, kube_ns: str, coredns: Callable[..., CoreDNS],
        peer_report: Callable[[str], None]) -> None:
    kube.service(kube_ns, "web", ports=[("http", 80, "TCP")])
    kube.endpoint_slice(kube_ns, "web-a", service="web", addresses=["10.1.0.5"], ports=[("http", 8080, "TCP")])
    kube.headless_service(kube_ns, "hl", ports=[("http", 80, "TCP")])
    kube.endpoint_slice(kube_ns, "hl-a", service="hl", addresses=[
        {"addresses": ["10.1.1.10"], "conditions": {"ready": True}, "hostname": "pet-0"}],
        ports=[("http", 8080, "TCP")])
    kube.external_name_service(kube_ns, "ext", "www.example.invalid")
    async with kube_pair(coredns, kube_api.kubeconfig, kube_ns) as (theirs, ours):
        for port in (theirs, ours):  # both have seen the objects (the last one created)
            await until(lambda p=port: _answered(p, q("pet-0.hl.example.net")), f"pet-0 answered on {port}")
        results = []
        for question in KUBE_QUESTIONS:
            cd, ik = await asyncio.gather(ask(theirs, question), ask(ours, question))
            results.append(Compared(case_id(Scenario("kube", (), ()), question), shape(cd), shape(ik)))
    verdict(results, "rewrite + kubernetes vs CoreDNS 1.15", peer_report)
    assert sum(1 for r in results if r.interkube["answer"]) >= 8


async def _answered(port: int, question: Question) -> bool:
    answer = await ask(port, question)
    return not isinstance(answer, str) and bool(answer.answer)

"""The same Corefile in CoreDNS and in interkube, the same queries: the log lines must match.

Only what has to differ between two processes is normalised: the client's port (each query
goes out from a new socket) and the duration. The response size is the one documented
difference (docs/divergences.md, "The log plugin's {rsize}"), checked on its own in
test_log.py. Needs the CoreDNS peer (scripts/build-peers); skipped without it.
"""

from __future__ import annotations

import contextlib
import re
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.message
import dns.rdataclass
import dns.rdatatype
import pytest

from testkit import fakeupstream
from testkit.coredns import CoreDNS
from testkit.fakeupstream import Behaviour
from testkit.servers import free_port, interkube_process, process_output
from testkit.waiting import until

from test_log import CLASS_OF, upstream_answer

pytestmark = pytest.mark.peers

#: Every placeholder CoreDNS knows, a metadata label no plugin sets, a brace pair that is not a
#: placeholder, and nested braces; rsize and duration last, where the normalisation finds them.
EVERYTHING = ('{remote}:{port} - {>id} {type} {class} {name} {proto} {size} {>do} {>bufsize} {rcode} '
              '{>rflags} {>opcode} {local} {xyz} {/log/class} { {type} } A } {rsize} {duration}')

SIGNED_ZONE = """\
$ORIGIN signed.test.
@        3600 IN SOA ns.signed.test. admin.signed.test. 1 7200 3600 1209600 3600
@        3600 IN NS  ns.signed.test.
ns       3600 IN A   192.0.2.53
www      3600 IN A   192.0.2.1
sub      3600 IN NS  ns.sub.signed.test.
ns.sub   3600 IN A   192.0.2.54
"""


UPSTREAM_KINDS = tuple(CLASS_OF)


def corefile(port_suffix: str, work: Path, closed_port: int, upstream: str) -> str:
    """The Corefile both servers run; ``port_suffix`` is ``:PORT`` for interkube (CoreDNS takes
    its port from -dns.port)."""
    p = port_suffix
    hosts = work / "hosts"  # an empty file: the hosts plugin would otherwise read /etc/hosts
    big = "\n".join(f"        198.51.100.{i} big.example.org" for i in range(1, 61))
    return textwrap.dedent(f"""\
        example.org{p} {{
            bind 127.0.0.1
            log quiet.example.org {{
                class denial
            }}
            log . "{EVERYTHING}"
            acl {{
                block net 127.0.0.2
                drop net 127.0.0.3
            }}
            hosts {hosts} {{
        __BIG__
                192.0.2.1 www.example.org
                2001:db8::1 www.example.org
                192.0.2.2 x.quiet.example.org
            }}
        }}
        common.test{p} {{
            bind 127.0.0.1
            log
            hosts {hosts} {{
                192.0.2.3 a.common.test
                fallthrough
            }}
        }}
        combined.test{p} {{
            bind 127.0.0.1
            log a.combined.test b.combined.test
            log . {{combined}} {{
                class success error
            }}
            hosts {hosts} {{
                192.0.2.4 a.combined.test
                192.0.2.5 c.combined.test
                fallthrough e.combined.test
            }}
        }}
        filters.test{p} {{
            bind 127.0.0.1
            log d.filters.test {{
                class denial
            }}
            log s.filters.test {{
                class success
            }}
            log e.filters.test {{
                class error
            }}
            log ds.filters.test {{
                class denial
                class success
            }}
            log all.filters.test {{
                class all denial
            }}
            hosts {hosts} {{
                192.0.2.6 x.d.filters.test x.s.filters.test x.e.filters.test x.ds.filters.test
                192.0.2.6 x.all.filters.test
                fallthrough e.filters.test
            }}
        }}
        signed.test{p} {{
            bind 127.0.0.1
            log . "{{>id}} {{name}} {{type}} {{>do}} {{rcode}} {{>rflags}}" {{
                class success
            }}
            file {work / "signed.db"}
        }}
        up.test{p} {{
            bind 127.0.0.1
            log success.up.test {{
                class success
            }}
            log denial.up.test {{
                class denial
            }}
            log error.up.test {{
                class error
            }}
            log . {{combined}}
            forward . {upstream}
        }}
        fwd.test{p} {{
            bind 127.0.0.1
            errors
            log
            forward . 127.0.0.1:{closed_port}
        }}
        v6.test{p} {{
            bind ::1
            log . "{{remote}}:{{port}} - {{>id}} {{local}} {{name}} {{proto}} {{rcode}} {{rsize}} {{duration}}"
            hosts {hosts} {{
                2001:db8::6 www.v6.test
            }}
        }}
        """).replace("__BIG__", big.lstrip())


@dataclass(frozen=True)
class Ask:
    """One query, sent alike to both servers."""

    name: str
    rdtype: str | int = "A"
    tcp: bool = False
    source: str = "127.0.0.1"
    host: str = "127.0.0.1"
    rdclass: str = "IN"
    edns: int | None = None         # the EDNS version, None for no OPT record
    payload: int = 1232
    do: bool = False
    #: A query nothing answers (acl drop): wait briefly, expect silence from both.
    dropped: bool = False


QUERIES: list[Ask] = [
    Ask("www.example.org"), Ask("www.example.org", tcp=True), Ask("WWW.Example.ORG", "AAAA"),
    Ask("www.example.org", "MX"), Ask("nope.example.org"), Ask("nope.example.org", tcp=True),
    Ask("www.example.org", edns=0, payload=4096, do=True),
    Ask("www.example.org", edns=0, payload=256), Ask("www.example.org", tcp=True, edns=0),
    Ask("big.example.org"), Ask("big.example.org", tcp=True), Ask("big.example.org", edns=0, payload=4096),
    Ask("big.example.org", edns=0),
    Ask("www.example.org", 65280), Ask("www.example.org", 34), Ask("www.example.org", 11),
    Ask("www.example.org", 0), Ask("www.example.org", "HTTPS"), Ask("www.example.org", "AXFR", tcp=True),
    Ask("gone.common.test", rdclass="CH"), Ask("www.example.org", "ANY"),
    Ask("www.example.org", source="127.0.0.2"), Ask("www.example.org", edns=0, source="127.0.0.2"),
    Ask("www.example.org", source="127.0.0.3", dropped=True),
    Ask("x.quiet.example.org"), Ask("nope.quiet.example.org"), Ask("x.quiet.example.org", "AAAA"),
    Ask("a.common.test"), Ask("a.common.test", tcp=True, edns=0, payload=4096), Ask("gone.common.test"),
    Ask("a.common.test", edns=1),
    Ask("a.combined.test"), Ask("b.combined.test"), Ask("c.combined.test"), Ask("d.combined.test"),
    Ask("x.e.combined.test"), Ask("a.combined.test", tcp=True),
    *(Ask(name) for scope in ("d", "s", "e", "ds", "all") for name in (f"x.{scope}.filters.test",
                                                                        f"y.{scope}.filters.test")),
    Ask("x.d.filters.test", "AAAA"), Ask("x.s.filters.test", "AAAA"), Ask("x.ds.filters.test", "AAAA"),
    Ask("www.signed.test"), Ask("www.signed.test", "MX"), Ask("nope.signed.test"), Ask("x.sub.signed.test"),
    Ask("www.signed.test", edns=0, do=True),
    *(Ask(f"{kind}.{cls}.up.test", edns=0, do=True) for kind in UPSTREAM_KINDS
      for cls in ("success", "denial", "error", "all")),
    Ask("expired.success.up.test"), Ask("expired.error.up.test", edns=0),
    Ask("www.fwd.test"), Ask("www.fwd.test", "AAAA", tcp=True),
    Ask("www.v6.test", "AAAA", host="::1", source="::1"),
    Ask("www.v6.test", "AAAA", host="::1", source="::1", tcp=True),
]
#: Sent last, always logged by both: once its line is in both logs, every line is.
MARKER = Ask("a.common.test", "TXT")
FIRST_ID = 20000


async def ask(port: int, qid: int, a: Ask) -> dns.message.Message | None:
    q = dns.message.make_query(a.name, dns.rdatatype.RdataType.make(a.rdtype),
                               dns.rdataclass.from_text(a.rdclass), use_edns=a.edns is not None,
                               payload=a.payload, want_dnssec=a.do)
    if a.edns:
        q.use_edns(a.edns, payload=a.payload)
    q.id = qid
    timeout = 0.5 if a.dropped else 5.0
    try:
        if a.tcp:
            return await dns.asyncquery.tcp(q, a.host, port=port, source=a.source, timeout=timeout)
        return await dns.asyncquery.udp(q, a.host, port=port, source=a.source, timeout=timeout,
                                        ignore_unexpected=True)
    except dns.exception.Timeout:
        return None


_ID = re.compile(r"^\[INFO\] (?:\S+ - )?(\d+) ")
_PORT = re.compile(r"^(\[INFO\] (?:\[[^\]]+\]|[^\s:\[]+)):\d+ ")
_TAIL = re.compile(r"\d+ \d+(?:\.\d+)?s(?= \"\d+\"$|$)")


def lines(text: str, ids: range) -> list[str]:
    """The query log lines of the queries we sent, normalised, in a stable order."""
    out = []
    for line in text.splitlines():
        m = _ID.match(line)
        if m is None or int(m.group(1)) not in ids:
            continue
        line = _PORT.sub(r"\1:PORT ", line)
        out.append(_TAIL.sub("RSIZE DURATION", line))
    return sorted(out)


@dataclass
class Pair:
    coredns: CoreDNS
    port: int
    interkube_output: Callable[[], str]

    def coredns_output(self) -> str:
        return self.coredns.process.log_path.read_text(errors="replace")


@contextlib.contextmanager
def pair(binary: Path, work: Path) -> Iterator[Pair]:
    (work / "hosts").write_text("")
    (work / "signed.db").write_text(SIGNED_ZONE)
    closed = free_port()  # nothing listens there: forward's queries are refused at once
    port = free_port()
    with fakeupstream.in_thread(Behaviour(custom=upstream_answer)) as up:
        (work / "Corefile").write_text(corefile(f":{port}", work, closed, up.address))
        with CoreDNS(binary, corefile("", work, closed, up.address), work / "coredns") as cd, \
                interkube_process(work / "Corefile", port) as ik:
            yield Pair(cd, port, lambda: process_output(ik))


@pytest.fixture(scope="module")
def servers(coredns_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    with pair(coredns_binary, tmp_path_factory.mktemp("log-vs-coredns")) as running:
        yield running


async def test_the_same_lines_as_coredns(servers: Pair) -> None:
    ids = range(FIRST_ID, FIRST_ID + len(QUERIES) + 1)
    for qid, a in zip(ids, [*QUERIES, MARKER], strict=True):
        theirs = await ask(servers.coredns.port, qid, a)
        ours = await ask(servers.port, qid, a)
        assert (theirs is None) == (ours is None) == a.dropped, a
    marker = f" - {ids[-1]} "

    def both_logged_the_same() -> bool:
        ours, theirs = servers.interkube_output(), servers.coredns_output()
        return marker in ours and marker in theirs and lines(ours, ids) == lines(theirs, ids)

    with contextlib.suppress(AssertionError):  # if they never agree, the assertion shows how
        await until(both_logged_the_same, "both servers logged the same lines", timeout=10)
    assert lines(servers.interkube_output(), ids) == lines(servers.coredns_output(), ids)

"""The same Corefile with `metadata` in CoreDNS and interkube: the log lines that print the
metadata labels (log/type, log/class, one nothing sets) must be the same. Needs the CoreDNS
peer (scripts/build-peers); skipped without it."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import dns.asyncquery
import dns.message
import pytest

from testkit.coredns import CoreDNS
from testkit.servers import free_port, interkube_process, process_output
from testkit.waiting import until

pytestmark = pytest.mark.peers

ZONE = """$ORIGIN meta.test.
@ 3600 IN SOA ns.meta.test. admin.meta.test. 1 7200 3600 1209600 3600
@ 3600 IN NS ns.meta.test.
ns 3600 IN A 192.0.2.53
www 3600 IN A 192.0.2.10
sub 3600 IN NS ns.sub.meta.test.
ns.sub 3600 IN A 192.0.2.54
"""
FORMAT = "{>id} {name} {type} {/log/type} {/log/class} {/kubernetes/namespace}"
QUERIES = [("www.meta.test", "A"), ("www.meta.test", "MX"), ("nope.meta.test", "A"), ("x.sub.meta.test", "A"),
           ("meta.test", "SOA"), ("a.fail.test", "A"), ("a.plain.test", "A"), ("b.plain.test", "A")]
FIRST_ID = 31000
_LINE = re.compile(r"^\[INFO\] (\d+) (.*)$")


def corefile(p: str, work: Path, closed: int) -> str:
    return textwrap.dedent(f"""\
        meta.test{p} {{
            bind 127.0.0.1
            metadata
            log . "{FORMAT}"
            file {work / "db"}
        }}
        fail.test{p} {{
            bind 127.0.0.1
            metadata
            log . "{FORMAT}"
            forward . 127.0.0.1:{closed}
        }}
        plain.test{p} {{
            bind 127.0.0.1
            log . "{FORMAT}"
            hosts {work / "hosts"} {{
                192.0.2.1 a.plain.test
            }}
        }}
        """)


def lines(text: str) -> list[str]:
    found = []
    for line in text.splitlines():
        m = _LINE.match(line.strip())
        if m and FIRST_ID <= int(m.group(1)) < FIRST_ID + len(QUERIES):
            found.append(line.strip())
    return sorted(found)


async def test_the_same_metadata_in_the_log_as_coredns(coredns_binary: Path, tmp_path: Path) -> None:
    (tmp_path / "db").write_text(ZONE)
    (tmp_path / "hosts").write_text("")
    closed = free_port()
    port = free_port()
    (tmp_path / "Corefile").write_text(corefile(f":{port}", tmp_path, closed))
    with CoreDNS(coredns_binary, corefile("", tmp_path, closed), tmp_path / "coredns", probe_name="meta.test.") as cd, \
            interkube_process(tmp_path / "Corefile", port) as ik:
        for i, (name, rdtype) in enumerate(QUERIES):
            for server in (cd.port, port):
                q = dns.message.make_query(name, rdtype)
                q.id = FIRST_ID + i
                await dns.asyncquery.udp(q, "127.0.0.1", port=server, timeout=5)

        def ours() -> list[str]:
            return lines(process_output(ik))

        def theirs() -> list[str]:
            return lines(cd.process.log_path.read_text(errors="replace"))

        await until(lambda: len(ours()) == len(theirs()) == len(QUERIES), "both servers logged every query",
                    timeout=10)
        assert ours() == theirs()
        assert any(" NXDOMAIN denial -" in line for line in ours())  # (the labels were there to compare)

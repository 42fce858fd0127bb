"""transfer compared with CoreDNS 1.15: the same Corefile given to both servers (but for the
ports), the same transfers asked of both, what came back compared.

File zones: one zone file (mixed letters, a delegation with glue, a wildcard, records at the
apex) served by both, and a zone of 4,000 records that takes several messages; AXFR and IXFR
over TCP with dnspython, dig and kdig, over UDP, from a listed client, from one that is not,
for names that are not a covered zone, in another class; the NOTIFY each server sends at start
and after the file gets a new serial. Kubernetes: the same Services and EndpointSlices in the
test kube-apiserver read by both (`namespaces` keeps them to the test's own), AXFR and IXFR,
and what each does when a Service is added (NOTIFY, the serial).

Compared, per transfer: the rcode and flags of the first message, the records of all messages
(in any order, names in lower case, TTLs included; a kubernetes SOA's serial masked: D5), the
owner names' letters, how it starts and ends (the SOA), the OPT record of each message (there
or not, DO), and the number of messages. Every difference must be one that docs/divergences.md
lists under a ``- `transfer/CASE`: aspects`` line, and every one listed must still differ so;
the counts go to the peers' report. CoreDNS orders a name's records at random and interkube by
type: order is not compared, but the first and last records are.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import pytest

from testkit.coredns import CoreDNS
from testkit.kubeapi import KubeAPI, KubeObjects
from testkit.peers import free_udp_tcp_port
from testkit.servers import LOOPBACK, in_process
from testkit.waiting import until
from testkit.xfr import EXAMPLE_SERIAL, EXAMPLE_ZONE, NotifyListener, Transfer, transfer, transfer_query

from differential_corpus import Compared, check_documented

pytestmark = pytest.mark.peers

COMPARISON = "transfer"
ASPECTS = ("rcode", "flags", "records", "letters", "ends", "edns", "messages")

ZONE, SERIAL = EXAMPLE_ZONE, EXAMPLE_SERIAL
BIG = "$TTL 60\n@ IN SOA ns hostmaster 7 3600 600 86400 60\n@ IN NS ns\nns IN A 192.0.2.1\n" + "".join(
    f"host{i} IN A 10.9.{i // 256}.{i % 256}\n" for i in range(4000))


def corefile(p: str, db: Path, big: Path, notify: tuple[int, int]) -> str:
    """Both servers' Corefile; ``p`` is ``:PORT`` for interkube (CoreDNS takes -dns.port), and
    each gets its own NOTIFY listeners."""
    return f"""example.org{p} example.net{p} {{
    bind 127.0.0.1
    transfer example.org {{
        to 127.0.0.1:{notify[0]} 127.0.0.5:{notify[1]}
    }}
    file {db} example.org example.net {{
        reload 1s
    }}
}}
big.test{p} {{
    bind 127.0.0.1
    transfer {{
        to *
    }}
    file {big}
}}
"""


# --- what is compared ----------------------------------------------------------------------------


def _text(line: str, mask_serial: bool) -> str:
    fields = line.split()
    if mask_serial and len(fields) > 6 and fields[3].upper() == "SOA":
        fields[6] = "SERIAL"  # name TTL class SOA mname rname SERIAL ...
    return " ".join(fields).lower()


def shape_transfer(got: Transfer, mask_serial: bool = False) -> dict[str, Any]:
    if not got.messages:
        return {a: "nothing" for a in ASPECTS}
    first = got.messages[0]
    records = got.records
    return {
        "rcode": got.rcode,
        "flags": sorted(f for f in ("QR", "AA", "TC", "RD", "RA") if first.flags & dns.flags.Flag[f]),
        "records": sorted(_text(r.to_text(), mask_serial) for r in records),
        "letters": sorted({r.name.to_text() for r in records} - {r.name.to_text().lower() for r in records}),
        "ends": [dns.rdatatype.to_text(r.rdtype) for r in records[:1] + records[-1:]]
        + [f"{sum(1 for r in records if r.rdtype == dns.rdatatype.SOA)} SOA"],
        "edns": sorted({(m.edns >= 0, bool(m.ednsflags & dns.flags.DO)) for m in got.messages}),
        "messages": len(got.messages),
    }


def shape_notify(received: list[dns.message.Message]) -> dict[str, Any]:
    """The NOTIFY messages one listener got for the zone, in the shape of a transfer; a message
    sent again (no reply in time: the test's loop runs interkube too) counts once."""
    if not received:
        return {a: "none" for a in ASPECTS} | {"messages": 0}
    m = received[-1]
    return {
        "rcode": f"{dns.opcode.to_text(m.opcode())} {dns.rcode.to_text(m.rcode())}",
        "flags": sorted(f for f in ("QR", "AA", "TC", "RD", "RA") if m.flags & dns.flags.Flag[f]),
        "records": sorted(r.to_text() for section in (m.answer, m.authority, m.additional) for r in section),
        "letters": [q.to_text() for q in m.question],
        "ends": [],
        "edns": [m.edns >= 0],
        "messages": len({r.id for r in received}),
    }


async def tool(*argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return out.decode()


_DIG_SIZE = re.compile(r"XFR size: (\d+) records \(messages (\d+)")
_KDIG_SIZE = re.compile(r"Received \d+ B \((\d+) messages, (\d+) records\)")


def shape_tool(output: str, mask_serial: bool = False) -> dict[str, Any]:
    """dig's or kdig's output of a transfer: its records and its count of messages."""
    lines = [line for line in output.splitlines() if line.strip() and not line.startswith(";")]
    dig, kdig = _DIG_SIZE.search(output), _KDIG_SIZE.search(output)
    messages = int(dig.group(2)) if dig else int(kdig.group(1)) if kdig else 0
    return {
        "rcode": "NOERROR" if lines else "failed",
        "flags": [],
        "records": sorted(_text(line, mask_serial) for line in lines),
        "letters": sorted({line.split()[0] for line in lines} - {line.split()[0].lower() for line in lines}),
        "ends": [line.split()[3] for line in lines[:1] + lines[-1:]],
        "edns": [],
        "messages": messages,
    }


# --- file zones --------------------------------------------------------------------------------


@dataclass
class Pair:
    coredns: int
    interkube: int
    notify: dict[str, tuple[NotifyListener, NotifyListener]]


@contextlib.asynccontextmanager
async def file_pair(coredns: Callable[..., CoreDNS], work: Path) -> AsyncIterator[Pair]:
    db, big = work / "db.example.org", work / "db.big"
    db.write_text(ZONE)
    big.write_text(BIG)
    async with contextlib.AsyncExitStack() as stack:
        listeners = {}
        for who in ("coredns", "interkube"):
            a = await stack.enter_async_context(NotifyListener("127.0.0.1"))
            b = await stack.enter_async_context(NotifyListener("127.0.0.5"))
            listeners[who] = (a, b)
        ports = {who: (a.port, b.port) for who, (a, b) in listeners.items()}
        theirs = coredns(corefile("", db, big, ports["coredns"]), probe_name="example.org.")
        port = free_udp_tcp_port()
        await stack.enter_async_context(in_process(corefile(f":{port}", db, big, ports["interkube"])))
        yield Pair(theirs.port, port, listeners)


#: (case, zone, type, keyword arguments of testkit.xfr.transfer)
TRANSFERS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("file-axfr", "example.org", "AXFR", {}),
    ("file-axfr-edns-do", "example.org", "AXFR", {"do": True}),
    ("file-axfr-letters", "Example.ORG", "AXFR", {}),
    ("file-axfr-listed", "example.org", "AXFR", {"source": "127.0.0.5"}),
    ("file-axfr-refused", "example.org", "AXFR", {"source": "127.0.0.2", "edns": True}),
    ("file-ixfr-refused", "example.org", "IXFR", {"source": "127.0.0.2", "serial": 1}),
    ("file-ixfr-current", "example.org", "IXFR", {"serial": SERIAL, "edns": True}),
    ("file-ixfr-old", "example.org", "IXFR", {"serial": SERIAL - 1}),
    ("file-ixfr-newer", "example.org", "IXFR", {"serial": SERIAL + 1}),
    ("file-ixfr-nosoa", "example.org", "IXFR", {"edns": True}),
    ("file-axfr-nonapex", "www.example.org", "AXFR", {"edns": True}),
    ("file-axfr-uncovered", "example.net", "AXFR", {"edns": True}),
    ("file-axfr-chaos", "example.org", "AXFR", {"rdclass": "CH"}),
    ("file-big-axfr", "big.test", "AXFR", {"source": "127.0.0.9", "edns": True}),
)


async def test_file_zone_transfers_as_coredns_does(coredns: Callable[..., CoreDNS], tmp_path: Path,
                                                   peer_report: Callable[[str], None]) -> None:
    results: list[Compared] = []
    async with file_pair(coredns, tmp_path) as pair:
        for case, zone, rdtype, kw in TRANSFERS:
            cd, ik = await asyncio.gather(transfer(pair.coredns, zone, rdtype, **kw),
                                          transfer(pair.interkube, zone, rdtype, **kw))
            results.append(Compared(case, shape_transfer(cd), shape_transfer(ik)))
        for rdtype in ("AXFR", "IXFR"):
            for edns in (False, True):
                q = transfer_query("example.org", rdtype, serial=1, edns=edns)
                cd_udp, ik_udp = [await dns.asyncquery.udp(q, LOOPBACK, port=port, timeout=3)
                                  for port in (pair.coredns, pair.interkube)]
                results.append(Compared(f"file-udp-{rdtype.lower()}{'-edns' if edns else ''}",
                                        shape_transfer(Transfer([cd_udp])), shape_transfer(Transfer([ik_udp]))))
        for case, argv in (
                ("file-dig-axfr", ("dig", "AXFR", "example.org")),
                ("file-dig-ixfr-current", ("dig", f"IXFR={SERIAL}", "example.org")),
                ("file-dig-refused", ("dig", "-b", "127.0.0.2", "AXFR", "example.org")),
                ("file-dig-big", ("dig", "AXFR", "big.test")),
                ("file-kdig-axfr", ("kdig", "AXFR", "example.org")),
                ("file-kdig-big", ("kdig", "AXFR", "big.test"))):
            cmd, args = argv[0], argv[1:]
            extra = ("+tries=1", "+time=5") if cmd == "dig" else ("+timeout=5",)
            cd_out, ik_out = [await tool(cmd, f"@{LOOPBACK}", "-p", str(port), *extra, *args)
                              for port in (pair.coredns, pair.interkube)]
            results.append(Compared(case, shape_tool(cd_out), shape_tool(ik_out)))
        # NOTIFY: at start, then after the zone file gets a new serial (both read the same file).
        for who in ("coredns", "interkube"):
            for listener in pair.notify[who]:
                await until(lambda lst=listener: lst.notified("example.org."), f"{who}'s NOTIFY at start")
        results.append(Compared("file-notify-start", *(shape_notify(pair.notify[w][0].notified("example.org."))
                                                       for w in ("coredns", "interkube"))))
        (tmp_path / "db.example.org").write_text(ZONE.replace(str(SERIAL), str(SERIAL + 1)))
        for who in ("coredns", "interkube"):
            for listener in pair.notify[who]:
                await until(lambda lst=listener: len(lst.notified("example.org.")) >= 2,
                            f"{who}'s NOTIFY after the new serial")
        for i, name in enumerate(("file-notify-reload", "file-notify-reload-second-address")):
            results.append(Compared(name, *(shape_notify(pair.notify[w][i].notified("example.org."))
                                            for w in ("coredns", "interkube"))))
        after = await asyncio.gather(*(transfer(port, "example.org", "IXFR", serial=SERIAL)
                                       for port in (pair.coredns, pair.interkube)))
        results.append(Compared("file-ixfr-after-reload", shape_transfer(after[0]), shape_transfer(after[1])))
    check_documented(results, COMPARISON, ASPECTS, "transfer (file zones) vs CoreDNS 1.15", peer_report, "file-")
    whole = [r for r in results if r.interkube["rcode"] == "NOERROR" and len(r.interkube["records"]) > 10]
    assert len(whole) >= 8  # not a corpus of refusals


# --- kubernetes -----------------------------------------------------------------------------------


def kube_corefile(p: str, kubeconfig: Path, namespace: str, notify: int) -> str:
    return f"""cluster.local{p} {{
    bind 127.0.0.1
    transfer {{
        to 127.0.0.1:{notify}
    }}
    kubernetes cluster.local {{
        kubeconfig {kubeconfig}
        namespaces {namespace}
    }}
}}
"""


def populate(kube: KubeObjects, ns: str) -> None:
    kube.service(ns, "web", ports=[("http", 80, "TCP"), ("metrics", 9090, "TCP")])
    kube.service(ns, "single", ports=[(None, 8080, "TCP")])
    kube.service(ns, "np", type="NodePort", ports=[("http", 80, "TCP")])
    kube.dual_stack_service(ns, "dual", ports=[("dns", 53, "UDP")])
    kube.external_name_service(ns, "ext", "www.example.invalid")
    kube.external_name_service(ns, "ext-ip", "192.0.2.80")
    kube.headless_service(ns, "hl", ports=[("http", 80, "TCP")])
    kube.endpoint_slice(ns, "hl-a", service="hl", addresses=[
        {"addresses": ["10.1.1.10"], "conditions": {"ready": True}, "hostname": "pet-0"},
        "10.1.1.11",
        {"addresses": ["10.1.1.12"], "conditions": {"ready": False}}],
        ports=[("http", 8080, "TCP"), ("dns", 53, "UDP")])
    kube.endpoint_slice(ns, "hl-b", service="hl", addresses=["fd00:10:1::5"], address_type="IPv6",
                        ports=[("http", 8080, "TCP")])


def serial_of(reply: dns.message.Message) -> int:
    return int(reply.answer[0][0].serial)


async def soa(port: int) -> dns.message.Message:
    return await dns.asyncquery.udp(dns.message.make_query("cluster.local", "SOA"), LOOPBACK, port=port, timeout=3)


async def test_kubernetes_zone_transfers_as_coredns_does(
        kube_api: KubeAPI, kube: KubeObjects, kube_ns: str, coredns: Callable[..., CoreDNS],
        peer_report: Callable[[str], None]) -> None:
    populate(kube, kube_ns)
    results: list[Compared] = []
    async with NotifyListener() as theirs_notify, NotifyListener() as ours_notify:
        theirs = coredns(kube_corefile("", kube_api.kubeconfig, kube_ns, theirs_notify.port),
                         probe_name="cluster.local.").port
        ours = free_udp_tcp_port()
        async with in_process(kube_corefile(f":{ours}", kube_api.kubeconfig, kube_ns, ours_notify.port)):
            for port in (theirs, ours):  # both have seen every object (the last one made)
                await until(lambda p=port: _holds(p, "fd00:10:1::5"), f"the whole zone transferred on {port}")
            for case, kw in (("kube-axfr", {}), ("kube-axfr-edns-do", {"do": True}),
                             ("kube-ixfr-old", {"serial": 1}), ("kube-axfr-refused", {"source": "127.0.0.2"})):
                rdtype = "IXFR" if "serial" in kw else "AXFR"
                cd, ik = await asyncio.gather(transfer(theirs, "cluster.local", rdtype, **kw),
                                              transfer(ours, "cluster.local", rdtype, **kw))
                results.append(Compared(case, shape_transfer(cd, True), shape_transfer(ik, True)))
            # Each server's own serial is current: the SOA alone.
            serials = [serial_of(await soa(p)) for p in (theirs, ours)]
            cd, ik = await asyncio.gather(*(transfer(p, "cluster.local", "IXFR", serial=serial)
                                            for p, serial in zip((theirs, ours), serials, strict=True)))
            results.append(Compared("kube-ixfr-current", shape_transfer(cd, True), shape_transfer(ik, True)))
            for case, argv in (("kube-dig-axfr", ("dig", "+tries=1", "+time=5")), ("kube-kdig-axfr", ("kdig",))):
                cd_out, ik_out = [await tool(argv[0], f"@{LOOPBACK}", "-p", str(p), *argv[1:], "AXFR", "cluster.local")
                                  for p in (theirs, ours)]
                results.append(Compared(case, shape_tool(cd_out, True), shape_tool(ik_out, True)))
            # A Service added: the serial moves on both; interkube sends NOTIFY (at start too).
            await until(lambda: ours_notify.notified("cluster.local."), "interkube's NOTIFY at start")
            results.append(Compared("kube-notify-start", shape_notify(theirs_notify.notified("cluster.local.")),
                                    shape_notify(ours_notify.notified("cluster.local."))))
            before = {p: serial_of(await soa(p)) for p in (theirs, ours)}
            # CoreDNS's serial is the change's time in seconds: a change in the second of the last
            # one would not move it.
            await until(lambda: time.time() >= max(before.values()) + 1.5, "a second after the last change")
            told = len(ours_notify.notified("cluster.local."))
            kube.service(kube_ns, "late", ports=[("http", 80, "TCP")])
            for port in (theirs, ours):
                await until(lambda p=port: _holds(p, "late."), f"the new Service transferred on {port}")
            await until(lambda: len(ours_notify.notified("cluster.local.")) > told,
                        "interkube's NOTIFY after the change")
            moved = {p: "moved" if serial_of(await soa(p)) > before[p] else "kept" for p in (theirs, ours)}
            results.append(Compared("kube-serial-after-change", {a: moved[theirs] for a in ASPECTS},
                                    {a: moved[ours] for a in ASPECTS}))
            results.append(Compared("kube-notify-change", shape_notify(theirs_notify.notified("cluster.local.")),
                                    shape_notify(ours_notify.notified("cluster.local."))))
    check_documented(results, COMPARISON, ASPECTS, "transfer (kubernetes) vs CoreDNS 1.15", peer_report, "kube-")
    assert len(results[0].interkube["records"]) >= 20


async def _holds(port: int, text: str) -> bool:
    got = await transfer(port, "cluster.local", timeout=3)
    return got.complete and any(text in line for line in got.texts())

"""merge: a merged zone by DNS fan-out to three clusters' DNS servers (real processes)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from interkube.corefile.parser import parse_text
from interkube.dns.wire import parse_query
from interkube.errors import ConfigError
from interkube.plugin.request import Request
from interkube.plugins.merge.combine import ClusterReply, combine
from interkube.plugins.merge.handler import MergeHandler, MergeStats
from interkube.plugins.merge.parse import parse
from interkube.upstream.upstream import Upstream, UpstreamGroup
from testkit.corefile import directive
from testkit.fakeupstream import FakeUpstream
from testkit.servers import aquery, free_port, in_process, interkube_process, stop_process
from testkit.waiting import until

SOA = ("@ 30 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 {neg}\n"
       "@ 30 IN NS ns.dns\nns.dns 30 IN A 127.0.0.1\n")
ZONES = {
    "east": SOA.format(neg=20) + """
web.shop.svc 30 IN A 10.1.0.10
web.shop.svc 30 IN AAAA fd00:1::10
_http._tcp.web.shop.svc 30 IN SRV 0 50 80 web-0.web.shop.svc.cluster.local.
web-0.web.shop.svc 30 IN A 10.1.1.5
only-east.shop.svc 30 IN A 10.1.0.30
""",
    "west": SOA.format(neg=10) + """
web.shop.svc 10 IN A 10.2.0.10
web.shop.svc 10 IN A 10.1.0.10
_http._tcp.web.shop.svc 10 IN SRV 0 50 80 web-0.web.shop.svc.cluster.local.
_http._tcp.web.shop.svc 10 IN SRV 0 50 80 web-1.web.shop.svc.cluster.local.
web-0.web.shop.svc 10 IN A 10.2.1.5
web-1.web.shop.svc 10 IN A 10.2.1.6
txt-only.shop.svc 10 IN TXT "x"
""",
    "central": SOA.format(neg=40) + """
web.shop.svc 30 IN A 10.3.0.10
alias.shop.svc 30 IN CNAME web.shop.svc.cluster.local.
""",
}


@pytest.fixture
def clusters(tmp_path: Path) -> Iterator[dict[str, tuple[int, object]]]:
    """Three interkube processes, each serving one cluster's cluster.local zone."""
    procs: dict[str, tuple[int, object]] = {}
    with contextlib.ExitStack() as stack:
        for name, body in ZONES.items():
            port = free_port()
            zone = tmp_path / f"{name}.db"
            zone.write_text("$ORIGIN cluster.local.\n" + body)
            core = tmp_path / f"{name}.Corefile"
            core.write_text(f"cluster.local:{port} {{\n bind 127.0.0.1\n file {zone}\n}}\n")
            procs[name] = (port, stack.enter_context(interkube_process(core, port)))
        yield procs
        for _, proc in procs.values():  # a SIGSTOPped process must get going to take SIGTERM
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)  # type: ignore[attr-defined]


def merge_corefile(port: int, clusters: dict[str, tuple[int, object]], options: str = "") -> str:
    lines = "".join(f"        cluster {name} 127.0.0.1:{p} cluster.local\n" for name, (p, _) in clusters.items())
    return (f"cluster.all:{port} {{\n    bind 127.0.0.1\n    merge cluster.all {{\n{lines}"
            f"        timeout 500ms\n{options}    }}\n}}\n")


def addresses(msg: dns.message.Message) -> set[str]:
    return {rd.address for rrset in msg.answer if rrset.rdtype in (1, 28) for rd in rrset}


async def test_union_dedup_ttl_and_case(clusters) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    async with in_process(merge_corefile(port, clusters)):
        r = await aquery("Web.Shop.svc.cluster.all", "A", port)
        assert r.rcode() == dns.rcode.NOERROR
        assert addresses(r) == {"10.1.0.10", "10.2.0.10", "10.3.0.10"}  # 10.1.0.10 only once
        assert len(r.answer) == 1 and len(r.answer[0]) == 3
        assert r.answer[0].name.to_text() == "Web.Shop.svc.cluster.all."
        assert r.answer[0].ttl == 10  # the smallest any cluster gave
        aaaa = await aquery("web.shop.svc.cluster.all", "AAAA", port)
        assert addresses(aaaa) == {"fd00:1::10"}  # only east has one; others said NODATA


async def test_srv_targets_and_additional_records_are_rewritten(clusters) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    async with in_process(merge_corefile(port, clusters)):
        r = await aquery("_http._tcp.web.shop.svc.cluster.all", "SRV", port)
        targets = sorted(rd.target.to_text() for rd in r.answer[0])
        assert targets == ["web-0.web.shop.svc.cluster.all.", "web-1.web.shop.svc.cluster.all."]
        extra = {rrset.name.to_text(): {rd.address for rd in rrset} for rrset in r.additional}
        assert extra == {"web-0.web.shop.svc.cluster.all.": {"10.1.1.5", "10.2.1.5"},
                         "web-1.web.shop.svc.cluster.all.": {"10.2.1.6"}}
        # The rewritten target resolves through the merged zone too.
        a = await aquery("web-0.web.shop.svc.cluster.all", "A", port)
        assert addresses(a) == {"10.1.1.5", "10.2.1.5"}


async def test_cname_chain_is_kept_and_rewritten(clusters) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    async with in_process(merge_corefile(port, clusters)):
        r = await aquery("alias.shop.svc.cluster.all", "A", port)
        cname = next(rrset for rrset in r.answer if rrset.rdtype == dns.rdatatype.CNAME)
        assert cname[0].target.to_text() == "web.shop.svc.cluster.all."
        # central's file plugin follows its own chain: the target's A records come along.
        assert addresses(r) == {"10.3.0.10"}


async def test_nodata_nxdomain_and_the_soa(clusters) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    async with in_process(merge_corefile(port, clusters)):
        nodata = await aquery("txt-only.shop.svc.cluster.all", "A", port)
        assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
        soa = nodata.authority[0]
        assert soa.name.to_text() == "cluster.all." and soa[0].mname.to_text() == "ns.dns.cluster.all."
        assert soa.ttl == 30 and soa[0].minimum == 10  # the smallest negative TTL any cluster gave
        nx = await aquery("nothing.shop.svc.cluster.all", "A", port)
        assert nx.rcode() == dns.rcode.NXDOMAIN and nx.authority[0].rdtype == dns.rdatatype.SOA


async def test_local_first(clusters) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    async with in_process(merge_corefile(port, clusters, "        local east\n")):
        r = await aquery("web.shop.svc.cluster.all", "A", port)
        assert addresses(r) == {"10.1.0.10"}  # east has it: east alone
        r = await aquery("txt-only.shop.svc.cluster.all", "TXT", port)
        assert r.answer and r.answer[0][0].strings == (b"x",)  # east has not: the others
    async with in_process(merge_corefile(port, clusters, "        local east\n        policy all\n")):
        r = await aquery("web.shop.svc.cluster.all", "A", port)
        assert addresses(r) == {"10.1.0.10", "10.2.0.10", "10.3.0.10"}


async def test_stopped_and_hung_clusters_are_left_out_and_counted(clusters) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    async with in_process(merge_corefile(port, clusters)) as server:
        stop_process(clusters["central"][1])                     # gone: refused at once
        os.kill(clusters["west"][1].pid, signal.SIGSTOP)           # hung: past the 500 ms timeout
        r = await aquery("web.shop.svc.cluster.all", "A", port, timeout=5)
        assert r.rcode() == dns.rcode.NOERROR and addresses(r) == {"10.1.0.10"}
        handler = next(h for h in server.instance.built.handlers if h.plugin == "merge")  # type: ignore[attr-defined]
        assert handler.stats.left_out[("central", "error")] >= 1
        assert handler.stats.left_out[("west", "timeout")] >= 1
        # NXDOMAIN from the one cluster that answered: that is the answer.
        nx = await aquery("nothing.shop.svc.cluster.all", "A", port, timeout=5)
        assert nx.rcode() == dns.rcode.NXDOMAIN
        # Every cluster failing: SERVFAIL.
        os.kill(clusters["east"][1].pid, signal.SIGSTOP)
        r = await aquery("web.shop.svc.cluster.all", "A", port, timeout=5)
        assert r.rcode() == dns.rcode.SERVFAIL
        os.kill(clusters["west"][1].pid, signal.SIGCONT)
        os.kill(clusters["east"][1].pid, signal.SIGCONT)
        r = await aquery("web.shop.svc.cluster.all", "A", port, timeout=5)
        assert addresses(r) == {"10.1.0.10", "10.2.0.10"}


async def test_edns_and_tcp_through_real_clusters(clusters) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    async with in_process(merge_corefile(port, clusters)):
        r = await aquery("WEB.shop.svc.cluster.all", "A", port, use_edns=0, payload=4096, want_dnssec=True)
        assert addresses(r) == {"10.1.0.10", "10.2.0.10", "10.3.0.10"}
        assert r.edns == 0 and r.payload == 1232 and r.ednsflags & dns.flags.DO
        assert r.flags & dns.flags.AA and r.answer[0].name.to_text() == "WEB.shop.svc.cluster.all."
        t = await aquery("web.shop.svc.cluster.all", "SRV", port, tcp=True)
        assert t.rcode() == dns.rcode.NOERROR and not t.answer  # NODATA: SRV lives under _http._tcp
        t = await aquery("_http._tcp.web.shop.svc.cluster.all", "SRV", port, tcp=True)
        assert sorted(rd.target.to_text() for rd in t.answer[0]) == [
            "web-0.web.shop.svc.cluster.all.", "web-1.web.shop.svc.cluster.all."]


def malformed(query: dns.message.Message) -> dns.message.Message:
    """An answer with a 5-byte A record: refused by any reader."""
    resp = dns.message.make_response(query)
    rd = dns.rdata.GenericRdata(dns.rdataclass.IN, dns.rdatatype.A, b"\x0a\x00\x00\x01\x02")
    resp.answer.append(dns.rrset.from_rdata(query.question[0].name, 30, rd))
    return resp


async def test_truncated_and_malformed_cluster_answers() -> None:
    port = free_port()
    big, bad = await FakeUpstream().start(), await FakeUpstream().start()
    try:
        big.behaviour.truncate_udp = True
        big.behaviour.records[("many.shop.svc.cluster.local.", "A")] = ["10.9.0.1", "10.9.0.2", "10.9.0.3"]
        bad.behaviour.custom = malformed
        fakes = {"big": (big.port, None), "bad": (bad.port, None)}
        async with in_process(merge_corefile(port, fakes)) as server:
            r = await aquery("many.shop.svc.cluster.all", "A", port)
            assert r.rcode() == dns.rcode.NOERROR
            assert addresses(r) == {"10.9.0.1", "10.9.0.2", "10.9.0.3"}  # fetched again over TCP
            assert big.count("udp") == 1 and big.count("tcp") == 1
            handler = next(h for h in server.instance.built.handlers if h.plugin == "merge")  # type: ignore[attr-defined]
            assert handler.stats.left_out == {("bad", "malformed"): 1}
    finally:
        await big.stop()
        await bad.stop()


async def test_a_cancelled_merge_lets_go_of_its_queries() -> None:
    silent = await FakeUpstream().start()
    try:
        silent.behaviour.silent = True
        cfg = parse(parse_text(f". {{\n merge cluster.all {{\n cluster a {silent.address}\n"
                               f" cluster b {silent.address}\n timeout 5s\n }}\n}}\n")[0].directives[0])
        upstreams = [Upstream(c.addr, max_fails=0) for c in cfg.clusters]
        handler = MergeHandler(cfg, UpstreamGroup(upstreams), MergeStats())
        wire = dns.message.make_query("web.cluster.all.", "A").to_wire()
        task = asyncio.get_running_loop().create_task(
            handler.serve(Request(wire, parse_query(wire), ("127.0.0.1", 1), "udp")))
        await until(lambda: silent.count() >= 2, "both clusters asked")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert all(not sock.pending for up in upstreams for sock in up.udp._socks if sock is not None)  # type: ignore[union-attr]
        await handler.stop()
    finally:
        await silent.stop()


def test_combine_rules_without_sockets() -> None:
    zone = b"\x07cluster\x05local\x00"
    merged = b"\x07cluster\x03all\x00"
    query = parse_query(dns.message.make_query("x.ns.svc.cluster.all.", "A").to_wire())
    assert query is not None

    def reply(cluster: str, rcode: int, *rrs: str) -> ClusterReply:
        m = dns.message.make_response(dns.message.make_query("x.ns.svc.cluster.local.", "A"))
        m.set_rcode(rcode)
        for rr in rrs:
            m.answer.append(dns.rrset.from_text("x.ns.svc.cluster.local.", 5, "IN", "A", rr))
        return ClusterReply.read(cluster, zone, m.to_wire())

    def combined(*replies: ClusterReply) -> dns.message.Message:
        return dns.message.from_wire(combine(query, list(replies), merged))

    failed = ClusterReply("c", zone, None, "timeout")
    assert combined(failed).rcode() == dns.rcode.SERVFAIL
    servfail = reply("a", dns.rcode.SERVFAIL)
    assert combined(servfail, failed).rcode() == dns.rcode.SERVFAIL
    assert combined(reply("a", dns.rcode.NXDOMAIN), failed).rcode() == dns.rcode.NXDOMAIN
    both = combined(reply("a", dns.rcode.NXDOMAIN), reply("b", dns.rcode.NOERROR))
    assert both.rcode() == dns.rcode.NOERROR and not both.answer  # exists somewhere: NODATA
    data = combined(reply("a", dns.rcode.NOERROR, "192.0.2.1"), reply("b", dns.rcode.NXDOMAIN))
    assert [rd.address for rd in data.answer[0]] == ["192.0.2.1"]
    garbage = ClusterReply.read("d", zone, b"\x00" * 11)
    assert not garbage.counts and garbage.failure is not None and garbage.failure.startswith("malformed")


@pytest.mark.parametrize(("body", "message"), [
    ("", "at least one"),
    ("cluster east example.com", "not an IP address"),
    ("cluster east 127.0.0.1\n cluster east 127.0.0.2", "named twice"),
    ("cluster east 127.0.0.1\n local west", "no cluster named 'west'"),
    ("cluster east 127.0.0.1\n policy local-first", "needs a `local NAME`"),
    ("cluster east 127.0.0.1\n policy nearest", "unknown policy"),
    ("cluster east 127.0.0.1\n wait 1s", "unknown option 'wait'"),
])
def test_parse_errors(body: str, message: str) -> None:
    d = directive(f"merge cluster.all {{\n {body}\n }}")
    with pytest.raises(ConfigError, match=message) as info:
        parse(d)
    assert info.value.file == "Corefile" and info.value.line >= 2

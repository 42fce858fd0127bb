"""merge's callback path (issue 18): a UDP client's merged query fanned out from the listener's
socket callback and answered from the last cluster's answer callback, with no task, future or
timer per query; the outcomes are the slow path's (see interkube.plugins.merge.fanout)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import dns.rcode
import pytest

from interkube.plugins.merge.handler import MergeHandler
from interkube.server.listeners import UdpEndpoint
from testkit.fakeupstream import FakeUpstream
from testkit.servers import aquery, free_port, in_process
from testkit.waiting import until

NAME = "web.shop.svc.cluster.local."
MERGED = "web.shop.svc.cluster.all."


@pytest.fixture
async def clusters() -> AsyncIterator[list[FakeUpstream]]:
    ups = [await FakeUpstream().start() for _ in range(3)]
    for i, up in enumerate(ups):
        up.behaviour.records[(NAME, "A")] = [f"10.{i}.0.1"]
    try:
        yield ups
    finally:
        for up in ups:
            await up.stop()


def corefile(port: int, ups: list[FakeUpstream], plugins: str = "", timeout: str = "1s") -> str:
    lines = "".join(f"    cluster c{i} {up.address} cluster.local\n" for i, up in enumerate(ups))
    return (f"cluster.all:{port} {{\n  bind 127.0.0.1\n{plugins}  merge cluster.all {{\n{lines}"
            f"    timeout {timeout}\n  }}\n}}\n")


def merge_handler(server: object) -> MergeHandler:
    return next(h for h in server.instance.built.handlers if isinstance(h, MergeHandler))  # type: ignore[attr-defined]


def endpoint(server: object) -> UdpEndpoint:
    return next(lst._udp for lst in server.instance.listeners.values()  # type: ignore[attr-defined]
                if lst._udp is not None)


def addresses(resp: dns.message.Message) -> set[str]:
    return {rr.address for rrset in resp.answer for rr in rrset}


async def test_a_merged_udp_query_waits_on_no_task(clusters: list[FakeUpstream]) -> None:
    port = free_port()
    async with in_process(corefile(port, clusters)) as server:
        ep = endpoint(server)
        gate = asyncio.Event()
        for up in clusters:
            up.behaviour.gate = gate
        asking = asyncio.ensure_future(aquery(MERGED, "A", port))
        await until(lambda: all(up.count("udp") == 1 for up in clusters), "every cluster is asked")
        assert not ep.inflight and not ep.backlog  # no slow-path task holds the merged query
        gate.set()
        resp = await asking
        assert resp.rcode() == dns.rcode.NOERROR
        assert addresses(resp) == {"10.0.0.1", "10.1.0.1", "10.2.0.1"}
        assert resp.answer[0].name.to_text() == MERGED
        assert merge_handler(server).stats.requests == 1


async def test_a_silent_cluster_times_out_and_is_left_out(clusters: list[FakeUpstream]) -> None:
    clusters[1].behaviour.silent = True
    port = free_port()
    async with in_process(corefile(port, clusters, timeout="300ms")) as server:
        resp = await aquery(MERGED, "A", port)
        assert addresses(resp) == {"10.0.0.1", "10.2.0.1"}
        assert merge_handler(server).stats.left_out == {("c1", "timeout"): 1}


async def test_a_truncated_cluster_answer_is_fetched_over_tcp(clusters: list[FakeUpstream]) -> None:
    clusters[2].behaviour.truncate_udp = True
    port = free_port()
    async with in_process(corefile(port, clusters)) as server:
        resp = await aquery(MERGED, "A", port)
        assert addresses(resp) == {"10.0.0.1", "10.1.0.1", "10.2.0.1"}
        assert (clusters[2].count("udp"), clusters[2].count("tcp")) == (1, 1)
        assert merge_handler(server).stats.left_out == {}


async def test_log_sees_the_merged_answer(clusters: list[FakeUpstream], caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    async with in_process(corefile(port, clusters, plugins="  log\n")) as server:
        assert merge_handler(server).later_ok
        with caplog.at_level(logging.INFO, logger="interkube.query"):
            resp = await aquery(MERGED, "A", port)
        assert resp.rcode() == dns.rcode.NOERROR
        lines = [r.getMessage() for r in caplog.records if r.name == "interkube.query"]
        assert len(lines) == 1 and MERGED in lines[0] and "NOERROR" in lines[0]


async def test_many_merged_queries_at_once(clusters: list[FakeUpstream]) -> None:
    port = free_port()
    names = [f"n{i}.shop.svc.cluster." for i in range(30)]
    for up in clusters:
        for n in names:
            up.behaviour.records[(n + "local.", "A")] = ["10.9.9.9"]
    async with in_process(corefile(port, clusters)) as server:
        answers = await asyncio.gather(*(aquery(n + "all.", "A", port) for n in names))
        assert [a.question[0].name.to_text() for a in answers] == [n + "all." for n in names]
        assert all(addresses(a) == {"10.9.9.9"} for a in answers)
        assert merge_handler(server).stats.requests == 30

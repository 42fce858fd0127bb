"""forward's callback path (issue 18): a UDP client's query forwarded from the listener's socket
callback and its answer relayed from the upstream socket's, with no task, future or timer per
query; everything else goes on through the slow path as before, from where the callback path
stopped (see interkube.plugins.forward.flight and interkube.plugin.later).

Each test runs a server in this event loop against fake upstreams, and checks what the clients
get, what the upstreams were asked and the forward counters, against the slow path's behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest
from prometheus_client import generate_latest

from interkube.plugin.handler import LATER
from interkube.plugins.cache.handler import CacheHandler
from interkube.plugins.forward.handler import ForwardHandler
from interkube.server.listeners import UdpEndpoint
from testkit.fakeupstream import FakeUpstream
from testkit.servers import aquery, free_port, in_process
from testkit.waiting import until

NAME = "a.example.org."


@pytest.fixture
async def upstreams() -> AsyncIterator[tuple[FakeUpstream, FakeUpstream]]:
    ups = (await FakeUpstream().start(), await FakeUpstream().start())
    for up, addr in zip(ups, ("10.0.0.1", "10.0.0.2"), strict=True):
        up.behaviour.records[(NAME, "A")] = [addr]
        for i in range(40):
            up.behaviour.records[(f"n{i}.example.org.", "A")] = [addr]
    try:
        yield ups
    finally:
        for up in ups:
            await up.stop()


def corefile(port: int, plugins: str, forward: str) -> str:
    return f".:{port} {{\n  bind 127.0.0.1\n{plugins}  forward . {forward}\n}}\n"


def handlers(server: object, kind: type) -> list:  # type: ignore[type-arg]
    return [h for h in server.instance.built.handlers if isinstance(h, kind)]  # type: ignore[attr-defined]


def udp_endpoints(server: object) -> list[UdpEndpoint]:
    found = [lst._udp for lst in server.instance.listeners.values()]  # type: ignore[attr-defined]
    return [ep for ep in found if ep is not None]


async def held(up: FakeUpstream, port: int, name: str = NAME,
               **make_kwargs: Any) -> tuple[asyncio.Event, asyncio.Future[dns.message.Message]]:
    """An A query for ``name`` sent to the server and held at the upstream until the test sets
    the event it gets back (the query: its answer to come)."""
    gate = up.behaviour.gate = asyncio.Event()
    before = up.count("udp")
    asking = asyncio.ensure_future(aquery(name, "A", port, **make_kwargs))
    await until(lambda: up.count("udp") == before + 1, "the query reaches the upstream")
    return gate, asking


def counts(fwd: ForwardHandler) -> list[tuple[int, int, int, dict[int, float]]]:
    return [(up.stats.requests, up.stats.failures, up.stats.truncated_retries,
             {rcode: e[0] for rcode, e in up.stats.responses.items()}) for up in fwd.upstreams]


async def test_a_udp_query_is_forwarded_without_a_task_and_its_answer_relayed(
        upstreams: tuple[FakeUpstream, FakeUpstream]) -> None:
    up, _ = upstreams
    port = free_port()
    async with in_process(corefile(port, "", up.address)) as server:
        [fwd] = handlers(server, ForwardHandler)
        [ep] = udp_endpoints(server)
        gate, asking = await held(up, port)
        # In flight: counted by forward (max_concurrent), and no slow-path task holds it.
        assert fwd.inflight == 1
        assert not ep.inflight and not ep.backlog
        gate.set()
        resp = await asking
        assert resp.rcode() == dns.rcode.NOERROR
        assert [rr.address for rr in resp.answer[0]] == ["10.0.0.1"]
        assert fwd.inflight == 0
        assert counts(fwd) == [(1, 0, 0, {0: 1.0})]


async def test_every_answer_relayed_is_counted_and_timed_for_its_upstream(
        upstreams: tuple[FakeUpstream, FakeUpstream]) -> None:
    up, _ = upstreams
    port = free_port()
    async with in_process(corefile(port, "", up.address)) as server:
        [fwd] = handlers(server, ForwardHandler)
        # Mixed letter case too: the answer is matched to its question case aside.
        for name in ("n1.example.org.", "N2.Example.ORG.", "n3.example.org."):
            resp = await aquery(name, "A", port)
            assert resp.rcode() == dns.rcode.NOERROR and resp.question[0].name.to_text() == name
        # The first answer of an rcode makes its entry; the others add to it (count, seconds,
        # and one duration bucket each).
        entry = fwd.upstreams[0].stats.responses[0]
        assert entry[0] == 3 and sum(entry[2:]) == 3 and entry[1] > 0
        assert counts(fwd) == [(3, 0, 0, {0: 3.0})]


async def test_cache_log_and_prometheus_see_the_answer_that_came_later(
        upstreams: tuple[FakeUpstream, FakeUpstream], caplog: pytest.LogCaptureFixture) -> None:
    up, _ = upstreams
    port = free_port()
    plugins = "  log\n  prometheus 127.0.0.1:0\n  cache\n"
    async with in_process(corefile(port, plugins, up.address)) as server:
        [fwd] = handlers(server, ForwardHandler)
        [cache] = handlers(server, CacheHandler)
        assert fwd.later_ok
        with caplog.at_level(logging.INFO, logger="interkube.query"):
            first = await aquery(NAME, "A", port)
            second = await aquery(NAME, "A", port)
        assert up.count() == 1  # the second came from the cache, stored from the relayed answer
        assert first.answer == second.answer
        assert cache.stats.misses == 1 and cache.stats.hits[0] == 1
        lines = [r.getMessage() for r in caplog.records if r.name == "interkube.query"]
        assert len(lines) == 2 and all(NAME in line and "NOERROR" in line for line in lines)
        body = generate_latest(server.services.metrics.registry).decode()  # type: ignore[attr-defined]
        responses = [line for line in body.splitlines()
                     if line.startswith("interkube_dns_responses_total{") and 'plugin="forward"' in line]
        assert responses and float(responses[0].rsplit(" ", 1)[1]) == 1.0


async def test_a_truncated_answer_is_fetched_over_tcp_and_counted_as_the_slow_path_counts_it(
        upstreams: tuple[FakeUpstream, FakeUpstream]) -> None:
    up, _ = upstreams
    up.behaviour.truncate_udp = True
    port = free_port()
    async with in_process(corefile(port, "", up.address)) as server:
        [fwd] = handlers(server, ForwardHandler)
        resp = await aquery(NAME, "A", port)
        assert [rr.address for rr in resp.answer[0]] == ["10.0.0.1"]
        assert (up.count("udp"), up.count("tcp")) == (1, 1)
        assert counts(fwd) == [(1, 0, 1, {0: 1.0})]
        assert fwd.inflight == 0


async def test_a_timeout_goes_on_to_the_next_upstream_without_asking_the_first_again(
        upstreams: tuple[FakeUpstream, FakeUpstream]) -> None:
    silent, answering = upstreams
    silent.behaviour.silent = True
    port = free_port()
    forward = f"{silent.address} {answering.address} {{\n    policy sequential\n    read_timeout 200ms\n" \
              "    health_check 0\n  }"
    async with in_process(corefile(port, "", forward)) as server:
        [fwd] = handlers(server, ForwardHandler)
        resp = await aquery(NAME, "A", port)
        assert [rr.address for rr in resp.answer[0]] == ["10.0.0.2"]
        # One attempt each, as the slow path's loop makes them: the first on the callback path,
        # the second where the slow path carried on.
        assert (silent.count(), answering.count()) == (1, 1)
        assert counts(fwd) == [(1, 1, 0, {}), (1, 0, 0, {0: 1.0})]
        assert fwd.inflight == 0


async def test_a_failover_rcode_goes_on_to_the_next_upstream(
        upstreams: tuple[FakeUpstream, FakeUpstream]) -> None:
    failing, answering = upstreams
    failing.behaviour.rcode = dns.rcode.SERVFAIL
    port = free_port()
    forward = f"{failing.address} {answering.address} {{\n    policy sequential\n    failover SERVFAIL\n  }}"
    async with in_process(corefile(port, "", forward)) as server:
        [fwd] = handlers(server, ForwardHandler)
        resp = await aquery(NAME, "A", port)
        assert [rr.address for rr in resp.answer[0]] == ["10.0.0.2"]
        assert (failing.count(), answering.count()) == (1, 1)
        assert counts(fwd) == [(1, 0, 0, {2: 1.0}), (1, 0, 0, {0: 1.0})]


async def test_many_queries_at_once_each_get_their_own_answer(
        upstreams: tuple[FakeUpstream, FakeUpstream]) -> None:
    up, _ = upstreams
    port = free_port()
    async with in_process(corefile(port, "", up.address)) as server:
        [fwd] = handlers(server, ForwardHandler)
        names = [f"n{i}.example.org." for i in range(40)]
        answers = await asyncio.gather(*(aquery(n, "A", port) for n in names))
        assert [a.question[0].name.to_text() for a in answers] == names
        assert all(a.rcode() == dns.rcode.NOERROR and a.answer for a in answers)
        assert counts(fwd) == [(40, 0, 0, {0: 40.0})]


async def test_a_handler_that_does_not_pass_later_on_keeps_forward_on_the_slow_path(
        upstreams: tuple[FakeUpstream, FakeUpstream], tmp_path: Path) -> None:
    up, _ = upstreams
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("search example.org\n")
    port = free_port()
    # autopath asks the chain behind it several times for one answer: not marked passes_later.
    async with in_process(corefile(port, f"  autopath example.org. {resolv}\n", up.address)) as server:
        [fwd] = handlers(server, ForwardHandler)
        assert not fwd.later_ok
        [ep] = udp_endpoints(server)
        gate, asking = await held(up, port)
        assert len(ep.inflight) == 1  # on the slow path
        gate.set()
        assert (await asking).answer
        assert counts(fwd) == [(1, 0, 0, {0: 1.0})]


async def test_tcp_clients_and_force_tcp_stay_on_the_slow_path(
        upstreams: tuple[FakeUpstream, FakeUpstream]) -> None:
    up, _ = upstreams
    port = free_port()
    async with in_process(corefile(port, "", f"{up.address} {{\n    force_tcp\n  }}")) as server:
        [fwd] = handlers(server, ForwardHandler)
        assert not fwd.callback_path()
        resp = await aquery(NAME, "A", port)
        assert resp.answer and (up.count("udp"), up.count("tcp")) == (0, 1)


def test_later_is_empty_bytes_so_a_listener_sends_nothing_now() -> None:
    assert LATER == b"" and not LATER


async def test_the_plugins_of_a_usual_corefile_keep_the_callback_path(
        upstreams: tuple[FakeUpstream, FakeUpstream], tmp_path: Path) -> None:
    up, _ = upstreams
    hosts = tmp_path / "hosts"
    hosts.write_text("10.7.7.7 local.example.org\n")
    port = free_port()
    plugins = (f"  errors\n  metadata\n  bufsize 1232\n  acl {{\n    allow net 127.0.0.0/8\n  }}\n"
               f"  hosts {hosts} {{\n    fallthrough\n  }}\n  any\n  chaos\n  local\n"
               "  log\n  cache\n  loadbalance\n")
    async with in_process(corefile(port, plugins, up.address)) as server:
        [fwd] = handlers(server, ForwardHandler)
        assert fwd.later_ok
        [ep] = udp_endpoints(server)
        gate, asking = await held(up, port)
        assert not ep.inflight and not ep.backlog
        gate.set()
        assert [rr.address for rr in (await asking).answer[0]] == ["10.0.0.1"]
        assert [rr.address for rr in (await aquery("local.example.org.", "A", port)).answer[0]] == ["10.7.7.7"]
        [acl] = [h for h in server.instance.built.handlers if h.plugin == "acl"]  # type: ignore[attr-defined]
        assert acl.stats.allowed == 2  # once each, whichever path answered


async def test_stopping_with_a_query_in_flight_starts_no_health_check(
        upstreams: tuple[FakeUpstream, FakeUpstream]) -> None:
    silent, _ = upstreams
    silent.behaviour.silent = True
    port = free_port()
    async with in_process(corefile(port, "", silent.address)) as server:
        [fwd] = handlers(server, ForwardHandler)
        asking = asyncio.ensure_future(aquery(NAME, "A", port, timeout=1))
        await until(lambda: silent.count("udp") == 1, "the query reaches the upstream")
    # Stopped with the query in flight: its "socket closed" failure probes nothing (a probe
    # would open a socket on the closed upstream and go on for as long as it is silent).
    [up] = fwd.upstreams
    assert up._probe_task is None
    with contextlib.suppress(Exception):
        await asking


async def test_minimal_and_rewrite_in_front_keep_the_callback_path_for_what_they_leave_alone(
        upstreams: tuple[FakeUpstream, FakeUpstream]) -> None:
    up, _ = upstreams

    def with_additional(query: dns.message.Message) -> dns.message.Message:
        resp = dns.message.make_response(query)
        name = query.question[0].name
        resp.answer.append(dns.rrset.from_text(name, 30, "IN", "A", "10.0.0.9"))
        resp.additional.append(dns.rrset.from_text("extra.example.org.", 30, "IN", "A", "10.0.0.10"))
        return resp

    up.behaviour.custom = with_additional
    port = free_port()
    plugins = ("  minimal\n  header {\n    response set ra\n  }\n  nsid interkube\n"
               "  transfer {\n    to *\n  }\n  rewrite name exact old.example.org. new.example.org.\n")
    async with in_process(corefile(port, plugins, up.address)) as server:
        [fwd] = handlers(server, ForwardHandler)
        assert fwd.later_ok
        [ep] = udp_endpoints(server)
        gate, asking = await held(up, port)
        assert not ep.inflight and not ep.backlog  # on the callback path
        gate.set()
        resp = await asking
        # minimal's step ran on the later answer (the additional section is gone), and header's.
        assert [rr.address for rr in resp.answer[0]] == ["10.0.0.9"] and not resp.additional
        assert resp.flags & dns.flags.RA
        # nsid's step: an answer to a query that asks for the NSID carries it.
        gate, asking = await held(up, port, use_edns=0, options=[dns.edns.GenericOption(dns.edns.NSID, b"")])
        assert not ep.inflight and not ep.backlog
        gate.set()
        resp = await asking
        assert [opt.to_wire() for opt in resp.options if opt.otype == dns.edns.NSID] == [b"interkube"]
        # A rewritten name goes through the slow path and comes back under the client's name.
        gate, asking = await held(up, port, "old.example.org.")
        assert len(ep.inflight) == 1
        assert str(up.queries[-1][1].question[0].name) == "new.example.org."
        gate.set()
        resp = await asking
        assert str(resp.answer[0].name) == "old.example.org." and not resp.additional

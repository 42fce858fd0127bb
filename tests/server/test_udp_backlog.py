"""The UDP listener under a flood of queries for the slow path (issue 19, section 6): the socket
is read empty and answers from memory leave before any slow work starts; what waits for the slow
path is bounded, the oldest dropped first and counted; the receive buffer is sized and logged.

Most tests drive a UdpEndpoint on a real loopback socket with a chain of their own (answers from
memory for names under mem.test, the slow path for the rest), so that they decide exactly what
is queued; the last ones run `interkube serve`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
import urllib.request
from pathlib import Path

import dns.message
import dns.rcode
import pytest

from interkube.dns.wire import RCODE_NOERROR, error_response, name_to_text
from interkube.plugin.handler import SLOW, Handler
from interkube.plugin.metrics import UDP_BACKLOG_DROPS
from interkube.plugin.request import Request
from interkube.server import listeners
from interkube.server.listeners import ListenerOptions, UdpEndpoint, size_receive_buffer
from testkit.servers import free_port, interkube_process, process_output, query
from testkit.waiting import until, wait_until
from tests.server.udp_helpers import SERVER, client, dispatcher, endpoint


class Recorder(Handler):
    """Answers names under mem.test. from memory; every other name on the slow path, once
    ``release`` is set. Records both, in order."""

    plugin = "recorder"

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.release = asyncio.Event()

    def fast(self, req: Request) -> bytes | None:
        name = name_to_text(req.query.lname)
        if name.endswith(".mem.test."):
            self.events.append(("fast", name))
            return error_response(req.wire, RCODE_NOERROR, req.query)
        return SLOW

    async def serve(self, req: Request) -> bytes:
        self.events.append(("slow", name_to_text(req.query.lname)))
        await self.release.wait()
        return error_response(req.wire, RCODE_NOERROR, req.query)

    def slow(self) -> list[str]:
        return [name for kind, name in self.events if kind == "slow"]


def wire(name: str) -> bytes:
    return dns.message.make_query(name, "A").to_wire()


def received(sock: socket.socket) -> list[str]:
    names: list[str] = []
    while True:
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return names
        names.append(dns.message.from_wire(data).question[0].name.to_text())


async def test_the_socket_is_read_empty_and_memory_answered_before_any_slow_work_starts() -> None:
    recorder = Recorder()
    async with endpoint(recorder) as ep:
        with client() as c:
            target = ep.sock.getsockname()
            # More slow queries than one batch of reads, then one from memory, all queued in the
            # socket before the listener gets a turn.
            for i in range(1500):
                c.sendto(wire(f"n{i}.fwd.test."), target)
            c.sendto(wire("p.mem.test."), target)
            await until(lambda: ("fast", "p.mem.test.") in recorder.events, "the from-memory query is answered")
            first_slow = next(i for i, (kind, _) in enumerate([*recorder.events, ("slow", "")]) if kind == "slow")
            assert recorder.events.index(("fast", "p.mem.test.")) < first_slow
            await until(lambda: "p.mem.test." in received(c), "its answer arrives")
            recorder.release.set()


async def test_a_full_backlog_drops_its_oldest_queries_first_and_counts_them() -> None:
    recorder = Recorder()
    async with endpoint(recorder) as ep:
        ep.backlog_limit = 8
        ep.inflight_limit = 2
        before = UDP_BACKLOG_DROPS.counts.get(SERVER, 0)
        with client() as c:
            addr = c.getsockname()
            # No await in between: all twenty wait at once, in the order they came.
            for i in range(20):
                assert ep.handle(wire(f"n{i}.fwd.test."), addr) is None
            assert ep.handle(wire("p.mem.test."), addr)  # from memory: answered, never queued
            assert len(ep.backlog) == 8
            # Two slots: the two oldest of those kept start, the rest wait for a slot; the drops
            # are counted by then.
            await until(lambda: len(recorder.slow()) == 2, "two slow queries start")
            assert ep.listener.stats.dropped_udp == 12
            assert UDP_BACKLOG_DROPS.counts[SERVER] - before == 12
            assert recorder.slow() == ["n12.fwd.test.", "n13.fwd.test."]
            assert len(ep.inflight) == 2 and len(ep.backlog) == 6
            recorder.release.set()
            await until(lambda: len(recorder.slow()) == 8, "every kept query is served")
            assert recorder.slow() == [f"n{i}.fwd.test." for i in range(12, 20)]
            answers: list[str] = []

            def all_answered() -> bool:
                answers.extend(received(c))
                return len(answers) == 8

            await until(all_answered, "their answers arrive")
            assert sorted(answers) == sorted(f"n{i}.fwd.test." for i in range(12, 20))


async def test_a_waiting_query_starts_on_the_dispatcher_of_the_moment() -> None:
    """A reload swaps the dispatcher: a query still waiting in the backlog has not started, so
    it runs on the new chain; one already started finishes on its own."""
    old, new = Recorder(), Recorder()
    old.release.set()
    new.release.set()
    async with endpoint(old) as ep:
        ep.inflight_limit = 1
        with client() as c:
            addr = c.getsockname()
            ep.handle(wire("a.fwd.test."), addr)
            await until(lambda: old.slow() == ["a.fwd.test."], "the first starts on the old chain")
            ep.handle(wire("b.fwd.test."), addr)
            ep.listener.dispatcher = dispatcher(new)
            await until(lambda: new.slow() == ["b.fwd.test."], "the waiting one starts on the new chain")
            assert old.slow() == ["a.fwd.test."]


class Counting(Recorder):
    """A Recorder that counts the queries its fast path is asked (all of them, answered or not)."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def fast(self, req: Request) -> bytes | None:
        self.asked.append(name_to_text(req.query.lname))
        return super().fast(req)


def waiting(ep: UdpEndpoint) -> list[str]:
    """The names in the backlog, oldest first."""
    return [dns.message.from_wire(data).question[0].name.to_text() for data, _, _ in ep.backlog]


async def test_a_full_backlog_takes_a_query_sent_slow_lately_without_asking_the_chain(
        reader: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the backlog is full, a query the fast path sent to the slow path lately (the same
    bytes after the ID) displaces the oldest waiting one without a walk of the chain; others,
    answers from memory among them, are still asked of the chain; the ones kept are served by
    the whole chain when they start."""
    monkeypatch.setattr(listeners, "SLOW_KEYS_TTL", 3600.0)  # remembered for the whole test
    recorder = Counting()
    async with endpoint(recorder) as ep:
        ep.backlog_limit = 4
        ep.inflight_limit = 0  # nothing starts until the test says so
        with client() as c:
            target = ep.sock.getsockname()
            for i in range(4):  # fill the backlog: each asked of the chain, and remembered
                c.sendto(wire(f"n{i}.fwd.test."), target)
            await until(lambda: len(ep.backlog) == 4, "the backlog fills")
            assert recorder.asked == [f"n{i}.fwd.test." for i in range(4)]
            # Another ID, the same question: shed without the chain, the oldest dropped.
            c.sendto(wire("n0.fwd.test."), target)
            c.sendto(wire("n1.fwd.test."), target)
            # A query not seen before and one from memory: asked as ever.
            c.sendto(wire("n9.fwd.test."), target)
            c.sendto(wire("p.mem.test."), target)
            await until(lambda: ("fast", "p.mem.test.") in recorder.events, "the from-memory query is answered")
            assert recorder.asked == [*(f"n{i}.fwd.test." for i in range(4)), "n9.fwd.test.", "p.mem.test."]
            assert waiting(ep) == ["n3.fwd.test.", "n0.fwd.test.", "n1.fwd.test.", "n9.fwd.test."]
            assert ep.dropped + ep.listener.stats.dropped_udp == 3
            # Each waiting query keeps when it arrived, on time.monotonic()'s clock (MAX_UDP_WAIT).
            now = time.monotonic()
            assert all(now - 60 < arrived <= now for _, _, arrived in ep.backlog)
            assert "p.mem.test." in received(c)
            ep.inflight_limit = 8
            recorder.release.set()
            ep.handle(wire("n3.fwd.test."), c.getsockname())  # (a pump, to start them)
            await until(lambda: len(recorder.slow()) == 4, "the waiting queries are served")
            assert recorder.slow() == ["n0.fwd.test.", "n1.fwd.test.", "n9.fwd.test.", "n3.fwd.test."]


async def test_shedding_starts_at_half_the_backlog_and_drops_nothing_below_its_limit(
        reader: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Far behind already (half the backlog waiting), the slow path gets a repeated query
    without the chain asked again; nothing is dropped until the backlog is full."""
    monkeypatch.setattr(listeners, "SLOW_KEYS_TTL", 3600.0)
    recorder = Counting()
    async with endpoint(recorder) as ep:
        ep.backlog_limit = 8
        ep.inflight_limit = 0
        with client() as c:
            target = ep.sock.getsockname()
            for name in ("n0", "n1", "n0", "n2", "n3", "n0", "n1"):
                c.sendto(wire(f"{name}.fwd.test."), target)
            await until(lambda: len(ep.backlog) == 7, "all wait")
            # Below half (4), a repeat is asked of the chain as ever; from there on, not.
            assert recorder.asked == [f"{name}.fwd.test." for name in ("n0", "n1", "n0", "n2", "n3")]
            assert waiting(ep) == [f"{name}.fwd.test." for name in ("n0", "n1", "n0", "n2", "n3", "n0", "n1")]
            assert ep.dropped + ep.listener.stats.dropped_udp == 0


async def test_a_query_is_asked_of_the_chain_again_after_a_while_and_after_a_reload(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What the fast path decided is remembered for SLOW_KEYS_TTL (a cache may learn the name
    meanwhile) and for the dispatcher that decided it only."""
    monkeypatch.setattr(listeners, "SLOW_KEYS_TTL", 3600.0)
    old = Counting()
    async with endpoint(old) as ep:
        ep.backlog_limit = 2
        ep.inflight_limit = 0
        addr = ("127.0.0.1", 9)
        for name in ("a.fwd.test.", "b.fwd.test.", "a.fwd.test."):
            ep.handle(wire(name), addr)
        assert old.asked == ["a.fwd.test.", "b.fwd.test."]  # the second a: shed
        await until(lambda: ep._pump_handle is None, "a pump runs")
        # A reload: the new chain decides for itself.
        new = Counting()
        ep.listener.dispatcher = dispatcher(new)
        ep.handle(wire("a.fwd.test."), addr)  # (remembered until the next pump notices)
        await until(lambda: ep._pump_handle is None, "a pump runs")
        ep.handle(wire("a.fwd.test."), addr)
        assert new.asked == ["a.fwd.test."]
        ep.handle(wire("a.fwd.test."), addr)
        assert new.asked == ["a.fwd.test."]
        # Past SLOW_KEYS_TTL (here: at once), asked again.
        ep._slow_keys_until = 0.0
        ep.handle(wire("a.fwd.test."), addr)  # (shed, which asks for a pump: the pump forgets)
        assert new.asked == ["a.fwd.test."]
        await until(lambda: ep._pump_handle is None, "a pump runs")
        ep.handle(wire("a.fwd.test."), addr)
        assert new.asked == ["a.fwd.test.", "a.fwd.test."]


async def test_the_receive_buffer_is_sized_and_logged(interkube_caplog: pytest.LogCaptureFixture) -> None:
    size = 3 * 1024 * 1024 + 4096
    async with endpoint(Recorder(), ListenerOptions(udp_rcvbuf=size)) as ep:
        # Linux reports twice what it grants (its bookkeeping counted in).
        granted = ep.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
        assert ep.rcvbuf == granted
        if not _privileged():
            pytest.skip("past net.core.rmem_max only with CAP_NET_ADMIN")
        assert granted == size
    assert f"UDP receive buffer {size} bytes" in interkube_caplog.text


async def test_zero_leaves_the_kernels_receive_buffer() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as fresh:
        default = fresh.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
    async with endpoint(Recorder(), ListenerOptions(udp_rcvbuf=0)) as ep:
        assert ep.rcvbuf == default == ep.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2


class _Unprivileged(socket.socket):
    """A socket as a process without CAP_NET_ADMIN has it: SO_RCVBUFFORCE is refused."""

    def setsockopt(self, level: int, option: int, value: int | bytes) -> None:  # type: ignore[override]
        if option == listeners._SO_RCVBUFFORCE:
            raise PermissionError(1, "Operation not permitted")
        super().setsockopt(level, option, value)


def test_without_privilege_the_buffer_stops_at_rmem_max_with_a_warning(
        interkube_caplog: pytest.LogCaptureFixture) -> None:
    rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
    with _Unprivileged(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        got = size_receive_buffer(sock, 2 * rmem_max, "dns://test:53")
    assert got == rmem_max
    [record] = [r for r in interkube_caplog.records if "receive buffer" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert f"UDP receive buffer {rmem_max} bytes, not the {2 * rmem_max} asked for" in record.getMessage()
    assert "rmem_max" in record.getMessage()


def _privileged() -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.setsockopt(socket.SOL_SOCKET, listeners._SO_RCVBUFFORCE, 1 << 16)
        except OSError:
            return False
    return True


# -- `interkube serve` ------------------------------------------------------------------------


def test_serve_applies_and_logs_the_receive_buffer_flag(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "hosts").write_text("192.0.2.1 p.mem.test\n")
    conf = tmp_path / "Corefile"
    conf.write_text(f"mem.test:{port} {{\n bind 127.0.0.1\n hosts {tmp_path / 'hosts'}\n}}\n")
    size = 1_234_567 if _privileged() else 65_536  # below any rmem_max: granted whoever runs it
    with interkube_process(conf, port, args=("--udp-rcvbuf", str(size))) as proc:
        assert query("p.mem.test.", "A", port).rcode() == dns.rcode.NOERROR
        assert re.search(rf"dns://127\.0\.0\.1:{port}: UDP receive buffer {size} bytes", process_output(proc))


def test_a_flood_of_forwarded_names_is_shed_and_answers_from_memory_go_on(tmp_path: Path) -> None:
    """More forwarded queries than the listener keeps (MAX_UDP_INFLIGHT started and
    MAX_UDP_BACKLOG waiting) towards an upstream that never answers: the oldest waiting are
    dropped and counted, and names from memory are answered all along."""
    port, http = free_port(), free_port()
    (tmp_path / "hosts").write_text("192.0.2.1 p.mem.test\n")
    conf = tmp_path / "Corefile"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # never read: every forward waits for its timeout
        conf.write_text(f"mem.test:{port} {{\n bind 127.0.0.1\n hosts {tmp_path / 'hosts'}\n}}\n"
                        f".:{port} {{\n bind 127.0.0.1\n errors\n prometheus 127.0.0.1:{http}\n"
                        f" forward . 127.0.0.1:{silent.getsockname()[1]}\n}}\n")
        # (Started without its readiness probe, which asks a name this Corefile forwards.)
        with interkube_process(conf, port, wait=False) as proc, client() as c:
            wait_until(lambda: query("p.mem.test.", "A", port, timeout=0.3).answer, "an answer from memory", 15,
                       ignoring=(Exception,), alive=lambda: proc.poll() is None)
            kept = listeners.MAX_UDP_INFLIGHT + listeners.MAX_UDP_BACKLOG
            queries = [wire(f"n{i}.fwd.test.") for i in range(2000)]
            sent = 0
            while sent < 3 * kept:
                try:
                    c.sendto(queries[sent % len(queries)], ("127.0.0.1", port))
                    sent += 1
                except BlockingIOError:
                    assert query("p.mem.test.", "A", port).rcode() == dns.rcode.NOERROR
            assert query("p.mem.test.", "A", port).answer

            def dropped() -> float:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=5) as r:
                    text = r.read().decode()
                found = re.findall(r"^interkube_dns_udp_backlog_dropped_total\{server=\"dns://127\.0\.0\.1:"
                                   rf"{port}\"\}} (\S+)$", text, re.M)
                return float(found[0]) if found else 0.0

            wait_until(lambda: dropped() > 0, "the oldest waiting queries are dropped and counted", 30)
            assert query("p.mem.test.", "A", port).answer
            # Consolidated by message: a handful of lines, not one per failed forward.
            assert process_output(proc).count("plugin/errors") < 100

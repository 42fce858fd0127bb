"""An address that cannot be bound: every socket of a configuration is bound before any serves,
so the failure names the server block's file:line, the process exits non-zero, and no socket of
the other blocks has answered a query or is still bound; a reload that fails so keeps the old
configuration serving.

The port that cannot be bound is always a loopback port this test holds a socket on.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dns.message
import dns.rcode
import pytest

from interkube.corefile.parser import parse_text
from interkube.errors import ListenerError
from interkube.plugin.services import Services
from interkube.server.runtime import Instance, build
from testkit.servers import aquery, free_port, in_process
from testkit.waiting import until

LOOPBACK = "127.0.0.1"


def port_is_free(port: int) -> bool:
    """Nothing holds the port on loopback, for UDP or TCP."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((LOOPBACK, port))
            except OSError:
                return False
    return True


@contextmanager
def held(port: int, kind: int) -> Iterator[socket.socket]:
    """A socket of this test on the port, so that interkube cannot bind it: a TCP listener, or a
    UDP socket (interkube binds TCP first, so a UDP holder fails the second socket of the pair)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((LOOPBACK, port))
        if kind == socket.SOCK_STREAM:
            s.listen()
        yield s


def block(ports: list[int], extra: str = "") -> str:
    """One server block whose keys listen on ``ports`` of 127.0.0.1."""
    keys = " ".join(f"{zone}.example:{port}" for zone, port in zip("abcdefgh", ports, strict=False))
    return f"{keys} {{\n    bind {LOOPBACK}\n{extra}}}\n"


HOSTS = "    hosts {\n        192.0.2.10 www.a.example\n    }\n"


class Probe:
    """Asks every listed port a question on every pass of the event loop, from one UDP socket, and
    keeps what came back: a socket that is served even for one pass of the loop answers one.
    The question is outside every zone, so a served socket refuses it at once from memory."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.setblocking(False)
        self.wire = dns.message.make_query("probe.invalid.", "A").to_wire()
        self.loop = asyncio.get_running_loop()
        self.handle = self.loop.call_soon(self.ask)
        self.answered: list[tuple[int, int]] = []  # (port, rcode)

    def ask(self) -> None:
        for port in self.ports:
            try:
                self.sock.sendto(self.wire, (LOOPBACK, port))
            except OSError:
                pass  # nobody there (an ICMP error reported late): nothing to answer
        self.handle = self.loop.call_soon(self.ask)

    def collect(self) -> list[tuple[int, int]]:
        """What has been answered so far (answers on loopback are delivered as they are sent)."""
        while True:
            try:
                data, addr = self.sock.recvfrom(65535)
            except BlockingIOError:
                return self.answered
            except OSError:
                continue  # an ICMP "port unreachable" for a question no socket was there for
            self.answered.append((addr[1], dns.message.from_wire(data).rcode()))

    def close(self) -> None:
        self.handle.cancel()
        self.sock.close()


@pytest.mark.parametrize("kind", [socket.SOCK_STREAM, socket.SOCK_DGRAM], ids=["tcp-held", "udp-held"])
def test_serve_names_the_block_of_an_address_in_use_and_starts_nothing(tmp_path: Path, kind: int) -> None:
    first, taken = free_port(), free_port()
    core = tmp_path / "Corefile"
    core.write_text(block([first], HOSTS) + "\n" + block([taken]))
    with held(taken, kind):
        out = subprocess.run([sys.executable, "-m", "interkube", "serve", "-conf", str(core)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 1, out.stdout + out.stderr
        # The second block starts on line 8 (the first takes six lines, then a blank line).
        assert (f"interkube serve: {core}:8: cannot listen on dns://{LOOPBACK}:{taken}: "
                f"Address already in use") in out.stderr
        assert port_is_free(first)


async def test_no_socket_answers_until_every_socket_is_bound(tmp_path: Path) -> None:
    ports = [free_port() for _ in range(3)]
    taken = free_port()
    text = block(ports) + block([taken])
    built = build(parse_text(text, "Corefile"), "Corefile", Services())
    probe = Probe(ports)
    try:
        with held(taken, socket.SOCK_STREAM), pytest.raises(ListenerError) as info:
            await Instance(built).start()
        assert str(info.value) == f"Corefile:4: cannot listen on dns://{LOOPBACK}:{taken}: Address already in use"
        await asyncio.sleep(0)  # one more pass of the loop: a socket still served would answer now
        assert probe.collect() == []
        assert all(port_is_free(p) for p in ports)

        # The probe does see a served socket: the same block alone starts and answers it.
        alone = Instance(build(parse_text(block(ports), "Corefile"), "Corefile", Services()))
        await alone.start()
        try:
            answered = await until(probe.collect, "the probe answered by the block started alone")
            assert {rcode for _, rcode in answered} == {dns.rcode.REFUSED}
        finally:
            await alone.stop()
    finally:
        probe.close()


async def test_reload_that_cannot_bind_names_the_block_and_keeps_serving(
        interkube_caplog: pytest.LogCaptureFixture) -> None:
    port, taken = free_port(), free_port()
    added = [free_port() for _ in range(3)]
    async with in_process(block([port], HOSTS)) as server:
        path = Path(server.source.path)  # type: ignore[attr-defined]
        path.write_text(block([port], HOSTS) + block(added) + block([taken]))
        probe = Probe(added)
        try:
            with held(taken, socket.SOCK_DGRAM):
                assert not await server.reload()  # type: ignore[attr-defined]
            await asyncio.sleep(0)  # one more pass of the loop: a socket still served would answer now
            assert probe.collect() == []
        finally:
            probe.close()
        assert all(port_is_free(p) for p in added)
        failures = [r.getMessage() for r in interkube_caplog.records if "reload failed" in r.getMessage()]
        assert failures == ["reload failed, still serving the previous configuration: "
                            f"{path}:10: cannot listen on dns://{LOOPBACK}:{taken}: Address already in use"]
        r = await aquery("www.a.example.", "A", port)
        assert [rr.address for rr in r.answer[0]] == ["192.0.2.10"]

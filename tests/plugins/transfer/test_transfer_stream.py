"""A transfer's messages leave as the client takes them: a client that stops reading holds its
transfer (not the server's memory, not the event loop), and one that goes away ends it."""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import struct
from pathlib import Path
from typing import Any

import pytest

from interkube.plugins.transfer import envelopes
from interkube.plugins.transfer.envelopes import MESSAGE_BUDGET
from interkube.server.listeners import TCP_WRITE_HIGH_WATER, TcpProtocol
from testkit.servers import LOOPBACK, aquery, free_port, in_process
from testkit.waiting import until
from testkit.xfr import transfer, transfer_query

#: 15,000 A records: some 600 KB on the wire, more than the listener's high-water mark and the
#: (small, see hold_back) socket buffers hold.
RECORDS = 15_000


@pytest.fixture(scope="module")
def big_zone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("zone") / "db.big"
    db.write_text("$TTL 60\n@ IN SOA ns hostmaster 9 1 1 1 1\n@ IN NS ns\nns IN A 192.0.2.1\nwww IN A 192.0.2.2\n"
                  + "".join(f"host-{i}.pool IN A 10.{i // 65536}.{i // 256 % 256}.{i % 256}\n"
                            for i in range(RECORDS)))
    return db


def connections(server: Any) -> list[TcpProtocol]:
    return [c for listener in server.instance.listeners.values() for c in listener.connections
            if isinstance(c, TcpProtocol)]


def slow_reader() -> socket.socket:
    """A client socket with a small receive buffer, which it does not read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    return sock


async def ask_transfer(server: Any, port: int, sock: socket.socket) -> TcpProtocol:
    """Connect, give the server's side of the connection a small send buffer (on loopback the
    kernel would otherwise take megabytes of it), and ask for the zone."""
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (LOOPBACK, port))
    conn = await until(lambda: next(iter(connections(server)), None), "the connection accepted")
    assert conn.transport is not None
    conn.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    wire = transfer_query("example.org").to_wire()
    await loop.sock_sendall(sock, struct.pack("!H", len(wire)) + wire)
    return conn


async def test_a_client_that_does_not_read_holds_its_transfer(
        big_zone: Path, interkube_caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    loop = asyncio.get_running_loop()
    async with in_process(f"example.org:{port} {{\n bind 127.0.0.1\n transfer {{\n  to *\n }}\n"
                          f" file {big_zone}\n}}\n") as server:
        with slow_reader() as sock:
            conn = await ask_transfer(server, port, sock)
            await until(lambda: conn.drained is not None and not conn.drained.done(),
                        "the transfer waiting for the client to read")
            buffered = conn.transport.get_write_buffer_size() if conn.transport is not None else 0
            for _ in range(200):  # the loop turns, and the transfer stays where it is
                await asyncio.sleep(0)
            assert conn.transport is not None
            assert conn.transport.get_write_buffer_size() == buffered <= TCP_WRITE_HIGH_WATER + MESSAGE_BUDGET + 100
            assert not conn.drained.done()
            assert "Outgoing transfer of" not in interkube_caplog.text
            # Meanwhile the server answers.
            answer = await aquery("www.example.org", "A", port, tcp=True)
            assert [rr.to_text() for rr in answer.answer] == ["www.example.org. 60 IN A 192.0.2.2"]
            # Read everything now: the whole zone comes, and the end is logged.
            records, soas = 0, 0
            while soas < 2:
                head = await asyncio.wait_for(_read(loop, sock, 2), 30)
                body = await asyncio.wait_for(_read(loop, sock, struct.unpack("!H", head)[0]), 30)
                records += struct.unpack("!H", body[6:8])[0]
                soas += body.count(b"\x00\x06\x00\x01")  # type SOA, class IN: the zone's first and last records
        assert records == RECORDS + 5
        await until(lambda: f"Outgoing transfer of {RECORDS + 5} records" in interkube_caplog.text,
                    "the transfer logged")


async def test_a_client_that_goes_away_ends_its_transfer(
        big_zone: Path, interkube_caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    async with in_process(f"example.org:{port} {{\n bind 127.0.0.1\n transfer {{\n  to *\n }}\n"
                          f" file {big_zone}\n}}\n") as server:
        with slow_reader() as sock:
            conn = await ask_transfer(server, port, sock)
            await until(lambda: conn.drained is not None, "the transfer waiting for the client to read")
        await until(lambda: "ended after" in interkube_caplog.text, "the transfer ended")
        assert "the connection closed" in interkube_caplog.text
        assert not connections(server)


async def test_the_loop_runs_while_a_message_is_made(big_zone: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop gets its turn every few records made, not once per message: a task that counts
    its turns runs many times between two messages (each some 1,500 records here)."""
    turns = 0
    at_message: list[int] = []
    real_message = envelopes.Envelope.message

    def message(self: envelopes.Envelope) -> bytes:
        at_message.append(turns)
        return real_message(self)

    monkeypatch.setattr(envelopes.Envelope, "message", message)

    async def count_turns() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    port = free_port()
    async with in_process(f"example.org:{port} {{\n bind 127.0.0.1\n transfer {{\n  to *\n }}\n"
                          f" file {big_zone}\n}}\n"):
        counter = asyncio.create_task(count_turns())
        try:
            got = await transfer(port, "example.org")
        finally:
            counter.cancel()
    assert got.complete and len(got.messages) == len(at_message) > 3
    between = [b - a for a, b in itertools.pairwise(at_message)]
    per_message = envelopes.MESSAGE_BUDGET // 40 // envelopes.PAUSE_RECORDS  # records of some 40 bytes
    assert min(between[:-1]) >= per_message // 2, between


async def _read(loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = await loop.sock_recv(sock, n - len(out))
        if not chunk:
            raise ConnectionError("closed")
        out += chunk
    return out


@pytest.fixture(autouse=True)
def _transfer_logs(interkube_caplog: pytest.LogCaptureFixture) -> None:
    interkube_caplog.set_level(logging.INFO, logger="interkube.plugin.transfer")

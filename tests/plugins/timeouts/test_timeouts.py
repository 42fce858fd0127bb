"""timeouts: parsed as CoreDNS reads it; the listeners of the block's addresses get the settings
(blocks sharing an address merge, a reload applies to open connections); maxtcpqueries closes a
connection after its last answer, write closes one whose client stops reading; the README's
examples."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import dns.message
import pytest

from interkube.corefile.parser import parse_text
from interkube.errors import ConfigError
from interkube.pkg.framing import frame
from interkube.plugin.services import Services
from interkube.plugin.setup import ConnectionTimeouts
from interkube.plugins.timeouts.parse import parse
from interkube.server.listeners import ListenerOptions
from interkube.server.runtime import build
from testkit.corefile import directive
from testkit.dot import Pki
from testkit.fakeupstream import FakeUpstream
from testkit.readme import on_port, readme_examples
from testkit.servers import LOOPBACK, free_port, in_process, read_frame
from testkit.waiting import until

#: 40 TXT strings of 40 bytes: an answer of about 2 KB.
ZONE = "$ORIGIN big.test.\n@ 3600 IN SOA ns. admin. 1 7200 3600 1209600 3600\n" + "".join(
    f'@ 3600 IN TXT "{i:02d}{"x" * 37}"\n' for i in range(40))


def test_parse() -> None:
    assert parse(directive("timeouts {\n read 10s\n write 20\n idle 1m\n maxtcpqueries 128\n}")) == \
        ConnectionTimeouts(read=10.0, write=20.0, idle=60.0, max_queries=128)
    assert parse(directive("timeouts {\n maxtcpqueries -1\n}")) == ConnectionTimeouts(max_queries=-1)


@pytest.mark.parametrize("body, line, words", [
    ("timeouts", 2, "timeouts: a timeouts block with no timeouts specified"),
    ("timeouts 5s {\n read 5s\n}", 2, "timeouts: expected exactly 0 arguments, got 1"),
    ("timeouts {\n read 500ms\n}", 3, "read 500ms must be between 1 second and 24 hours"),
    ("timeouts {\n idle 25h\n}", 3, "idle 25h must be between 1 second and 24 hours"),
    ("timeouts {\n write soon\n}", 3, "invalid duration 'soon'"),
    ("timeouts {\n read 5s\n read 6s\n}", 4, "option 'read' given twice (first at Corefile:3)"),
    ("timeouts {\n maxtcpqueries 0\n}", 3, "maxtcpqueries 0 must be -1 (no limit) or a positive integer"),
    ("timeouts {\n maxtcpqueries -2\n}", 3, "maxtcpqueries -2 must be -1"),
    ("timeouts {\n linger 5s\n}", 3, "timeouts: unknown option 'linger'"),
])
def test_parse_errors(body: str, line: int, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(directive(body))
    assert str(info.value).startswith(f"Corefile:{line}: ") and words in str(info.value), str(info.value)


def test_blocks_sharing_an_address_merge_later_settings_win() -> None:
    built = build(parse_text("a.test:53 {\n timeouts {\n  read 5s\n  idle 60s\n }\n}\n"
                             "b.test:53 {\n timeouts {\n  idle 30s\n }\n}\n"
                             "c.test:54 {\n}\n"), "Corefile", Services())
    assert built.timeouts == {("dns", "", 53): ConnectionTimeouts(read=5.0, idle=30.0)}


def test_the_options_of_a_listener() -> None:
    base = ListenerOptions()
    mine = base.with_timeouts(read=15.0, write=30.0, idle=None, max_queries=128)
    assert (mine.tcp_frame_timeout, mine.tls_handshake_timeout, mine.tcp_write_timeout, mine.tcp_idle_timeout,
            mine.tcp_max_queries) == (15.0, 15.0, 30.0, base.tcp_idle_timeout, 128)
    assert mine.table is base.table  # one connection table for the process


def query(qid: int, name: str = "a.example.", rdtype: str = "A") -> bytes:
    q = dns.message.make_query(name, rdtype)
    q.id = qid
    return frame(q.to_wire())


async def test_maxtcpqueries_answers_then_closes() -> None:
    port = free_port()
    core = f".:{port} {{\n bind 127.0.0.1\n timeouts {{\n  maxtcpqueries 3\n }}\n whoami\n}}\n"
    async with in_process(core):
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        writer.write(b"".join(query(i) for i in range(1, 6)))  # five pipelined, three allowed
        await writer.drain()
        ids = [int.from_bytes((await read_frame(reader))[:2], "big") for _ in range(3)]
        assert sorted(ids) == [1, 2, 3]
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed, nothing more answered
        writer.close()


async def test_readme_example_closes_after_128_queries() -> None:
    example = readme_examples("timeouts")[2]
    port = free_port()
    up = await FakeUpstream().start()
    up.behaviour.records = {(f"n{i}.example.", "A"): ["192.0.2.1"] for i in range(130)}
    try:
        async with in_process(on_port(example, port).replace("127.0.0.1:5300", up.address)):
            reader, writer = await asyncio.open_connection(LOOPBACK, port)
            writer.write(b"".join(query(i, f"n{i}.example.") for i in range(130)))
            await writer.drain()
            answers = [await read_frame(reader) for _ in range(128)]
            assert await asyncio.wait_for(reader.read(), 10) == b""
            writer.close()
    finally:
        await up.stop()
    assert sorted(int.from_bytes(a[:2], "big") for a in answers) == list(range(128))


async def test_a_client_that_stops_reading_is_closed_after_the_write_timeout(tmp_path: Path) -> None:
    (tmp_path / "db").write_text(ZONE)
    port = free_port()
    core = (f"big.test:{port} {{\n bind 127.0.0.1\n timeouts {{\n  write 1s\n }}\n"
            f" file {tmp_path / 'db'}\n}}\n")
    async with in_process(core) as server:
        table = server.options.table  # type: ignore[attr-defined]
        label = f"dns://127.0.0.1:{port}"
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # (before connect: a small window)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, (LOOPBACK, port))
        # Ask for 40 MB of answers and read none: the server's buffers fill, then it stops
        # reading, and this send waits for ever (until the connection is closed).
        sending = asyncio.ensure_future(loop.sock_sendall(sock, query(7, "big.test.", "TXT") * 20_000))
        try:
            await until(lambda: table.closed.get((label, "write_deadline"), 0) == 1,
                        "the connection closed for its unread answers", timeout=15)
        finally:
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)
            sock.close()
        assert table.closed.get((label, "idle"), 0) == 0


async def test_a_reload_applies_to_open_connections(tmp_path: Path) -> None:
    port = free_port()

    def core(idle: str) -> str:
        return f".:{port} {{\n bind 127.0.0.1\n timeouts {{\n  idle {idle}\n }}\n whoami\n}}\n"

    async with in_process(core("60s")) as server:
        srv: Any = server
        (listener,) = srv.instance.listeners.values()
        assert listener.options.tcp_idle_timeout == 60.0
        Path(srv.source.path).write_text(core("2m"))
        assert await srv.reload()
        (after,) = srv.instance.listeners.values()
        assert after is listener and listener.options.tcp_idle_timeout == 120.0


@pytest.mark.parametrize("index", [0, 1])
async def test_readme_examples_set_the_listeners(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 pki: Pki) -> None:
    examples = readme_examples("timeouts")
    assert len(examples) == 3
    monkeypatch.chdir(tmp_path)  # the tls example names its files relative to here
    for name, path in (("cert.pem", pki.crt("server")), ("key.pem", pki.key("server")), ("ca.pem", pki.crt("ca"))):
        (tmp_path / name).write_bytes(path.read_bytes())
    port = free_port()
    async with in_process(on_port(examples[index], port)) as server:
        (listener,) = server.instance.listeners.values()  # type: ignore[attr-defined]
        opts = listener.options
        if index == 0:
            assert (opts.tcp_frame_timeout, opts.tls_handshake_timeout, opts.tcp_write_timeout,
                    opts.tcp_idle_timeout) == (10.0, 10.0, 20.0, 60.0)
        else:
            assert (opts.tcp_frame_timeout, opts.tcp_write_timeout, opts.tcp_idle_timeout) == (15.0, 30.0, 10.0)

"""Hot reload: every query answered while the Corefile changes (valid, invalid, valid), answers
follow each valid change, an invalid one is reported with file:line and counted, and sockets that
keep their address keep their connections. The reload plugin (polling the Corefile) is tested in
tests/plugins/reload/."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import dns.asyncquery
import dns.message
import dns.rcode

from interkube.pkg.framing import frame
from testkit.servers import free_port, in_process, interkube_process, process_output, read_frame
from testkit.waiting import until


def corefile(port: int, upstream: str, extra: str = "") -> str:
    return f"example.:{port} {{\n    bind 127.0.0.1\n    errors\n{extra}    forward . {upstream}\n}}\n"


async def test_reload_under_load_valid_invalid_valid(tmp_path: Path, two_upstreams) -> None:  # type: ignore[no-untyped-def]
    a, b = two_upstreams
    port = free_port()
    core = tmp_path / "Corefile"
    core.write_text(corefile(port, a.address))
    answers: list[str] = []
    failures: list[str] = []
    stop = asyncio.Event()

    async def client(tcp: bool) -> None:
        q = dns.message.make_query("a.example.", "A")
        while not stop.is_set():
            try:
                if tcp:
                    r = await dns.asyncquery.tcp(q, "127.0.0.1", port=port, timeout=3)
                else:
                    r = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=3)
                if r.rcode() != dns.rcode.NOERROR:
                    failures.append(dns.rcode.to_text(r.rcode()))
                else:
                    answers.append(r.answer[0][0].address)
            except Exception as exc:  # every failure is what the test counts
                failures.append(repr(exc))
            await asyncio.sleep(0.005)

    async def latest_is(addr: str) -> bool:
        """Whether the next few answers, however long a busy machine takes to give them, all
        come from ``addr``."""
        n = len(answers)
        await until(lambda: len(answers) >= n + 4, "more answers")
        return all(x == addr for x in answers[n:])

    with interkube_process(core, port) as proc:
        clients = [asyncio.create_task(client(tcp)) for tcp in (False, True, False, True)]
        await until(lambda: latest_is("192.0.2.1"), "answers from the first upstream")

        core.write_text(corefile(port, b.address))                         # valid change
        os.kill(proc.pid, signal.SIGHUP)
        await until(lambda: latest_is("192.0.2.2"), "answers from the second upstream after a reload")

        core.write_text(corefile(port, b.address, extra="    forwrd . 127.0.0.1\n"))  # invalid
        os.kill(proc.pid, signal.SIGHUP)
        await until(lambda: "reload failed" in process_output(proc), "the invalid Corefile reported")
        assert await latest_is("192.0.2.2")  # still the previous configuration

        core.write_text(corefile(port, a.address))                         # valid again
        os.kill(proc.pid, signal.SIGHUP)
        await until(lambda: latest_is("192.0.2.1"), "answers from the first upstream after a reload")

        stop.set()
        await asyncio.gather(*clients)
        out = process_output(proc)
    assert failures == []  # (answers came in every phase: latest_is waits for them)
    assert f"{core}:4: unknown plugin 'forwrd'" in out
    assert out.count("Reloading complete") == 2


async def test_tcp_connection_survives_a_reload(tmp_path: Path, two_upstreams) -> None:  # type: ignore[no-untyped-def]
    a, b = two_upstreams
    port = free_port()
    async with in_process(corefile(port, a.address), name="Corefile") as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)

        async def ask() -> str:
            wire = dns.message.make_query("a.example.", "A").to_wire()
            writer.write(frame(wire))
            await writer.drain()
            return dns.message.from_wire(await read_frame(reader)).answer[0][0].address

        assert await ask() == "192.0.2.1"
        Path(server.source.path).write_text(corefile(port, b.address))  # type: ignore[attr-defined]
        assert await server.reload()  # type: ignore[attr-defined]
        assert await ask() == "192.0.2.2"  # same connection, new chain
        writer.close()


async def test_reload_that_cannot_bind_keeps_the_old_configuration(tmp_path: Path, two_upstreams) -> None:  # type: ignore[no-untyped-def]
    a, _ = two_upstreams
    port, taken = free_port(), free_port()
    import socket

    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(("127.0.0.1", taken))
    try:
        async with in_process(corefile(port, a.address), name="Corefile") as server:
            Path(server.source.path).write_text(  # type: ignore[attr-defined]
                corefile(port, a.address) + f"other.:{taken} {{\n    bind 127.0.0.1\n    errors\n}}\n")
            assert not await server.reload()  # type: ignore[attr-defined]
            assert server.services.metrics.reload_failed._value.get() == 1  # type: ignore[attr-defined]
            r = await dns.asyncquery.udp(dns.message.make_query("a.example.", "A"), "127.0.0.1", port=port, timeout=2)
            assert r.answer[0][0].address == "192.0.2.1"
    finally:
        blocker.close()

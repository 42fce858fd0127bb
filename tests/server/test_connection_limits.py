"""TCP and TLS connections that waste their slot: clients that trickle bytes, slowloris, silent
TLS handshakes, too many connections from one address. Each leaves a legitimate client served
(from another loopback address, 127.0.0.2, where the per-client limit is not in the way); and a
client that half-closes still gets the answers to what it asked."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterable

import dns.asyncquery
import dns.message
import dns.rcode
import pytest

from interkube.pkg.framing import frame
from interkube.server.listeners import Listener, ListenerOptions
from testkit.dot import ADDRESS, LOOPBACK, NAME, SERVER_NAME, Pki, dot_corefile, dot_query
from testkit.fakeupstream import FakeUpstream
from testkit.servers import free_port, http_get, in_process, read_frame
from testkit.waiting import until

#: The legitimate client's address: the abusive ones all come from 127.0.0.1.
OTHER = "127.0.0.2"


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    """The DoT server's upstream (the TLS tests' own fixture lives with them)."""
    up = await FakeUpstream().start()
    up.behaviour.records = {(f"{NAME}.", "A"): [ADDRESS]}
    yield up
    await up.stop()


def corefile(port: int, upstream: str | None = None, http: int | None = None) -> str:
    fwd = f"\n    forward . {upstream}" if upstream else ""
    prom = f"\n    prometheus 127.0.0.1:{http}" if http else ""
    return f"example.org:{port} {{\n    bind 127.0.0.1\n    errors{prom}{fwd}\n}}\n"


def listener_of(server: object, transport: str = "dns") -> Listener:
    (listener,) = [lst for key, lst in server.instance.listeners.items() if key[0] == transport]  # type: ignore[attr-defined]
    return listener


def query(name: str = "a.example.org.", qid: int | None = None) -> bytes:
    return dns.message.make_query(name, "A", id=qid).to_wire()


async def served(port: int, name: str = "a.example.org.", source: str = OTHER) -> dns.message.Message:
    """A TCP query on a new connection from ``source``; raises if the server closes it unanswered."""
    return await dns.asyncquery.tcp(dns.message.make_query(name, "A"), LOOPBACK, port=port, source=source,
                                    timeout=5)


async def connect(port: int, source: str = LOOPBACK) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(LOOPBACK, port, local_addr=(source, 0))


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True once the server has closed the connection (bounded: False if it stays open 10 s)."""
    try:
        return await asyncio.wait_for(reader.read(), 10) == b""
    except ConnectionError:
        return True
    except TimeoutError:
        return False


async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, chunks: Iterable[bytes],
               interval: float) -> bool:
    """Write ``chunks`` one per ``interval``; True if the server closed the connection before
    the last one was written (the attacker's pace, not a wait for the server)."""
    closed = asyncio.ensure_future(reader.read())
    try:
        for chunk in chunks:
            if closed.done():
                return True
            try:
                writer.write(chunk)
                await writer.drain()
            except ConnectionError:
                return True
            await asyncio.wait([closed], timeout=interval)
        return closed.done()
    finally:
        closed.cancel()
        writer.close()


def trickle(data: bytes) -> list[bytes]:
    return [data[i:i + 1] for i in range(len(data))]


#: A message that promises 256 bytes: one byte at a time, it takes its sender 100 intervals.
SLOW_MESSAGE = trickle(b"\x01\x00" + bytes(100))


async def test_connections_trickling_bytes_leave_a_legitimate_client_served() -> None:
    """Every slot held by a connection that trickles a message in: a new client still gets in,
    in the slot of the connection idle the longest (it has never asked a whole query). The frame
    timeout is set out of the way: making room is what is tested here."""
    port = free_port()
    opts = ListenerOptions(max_tcp_connections=16, tcp_frame_timeout=60)
    async with in_process(corefile(port), options=opts) as server:
        listener = listener_of(server)
        attackers = [await connect(port) for _ in range(16)]
        drips = [asyncio.create_task(drip(r, w, SLOW_MESSAGE, 0.05)) for r, w in attackers]
        await until(lambda: len(listener.connections) == 16, "the trickling connections to hold every slot")
        for _ in range(3):
            assert (await served(port)).rcode() == dns.rcode.SERVFAIL  # nothing answers in this chain
        # The first made room (the others took the slot each one before it gave back).
        assert listener.stats.tcp_closed.get("evicted", 0) >= 1
        for task in drips:
            task.cancel()
        await asyncio.gather(*drips, return_exceptions=True)


async def test_one_address_holds_no_more_than_its_share() -> None:
    """1,024 trickling connections from one client once held every slot; now it holds its limit."""
    port = free_port()
    opts = ListenerOptions(max_tcp_connections=32, max_tcp_per_client=8)
    async with in_process(corefile(port), options=opts) as server:
        listener = listener_of(server)
        attackers = [await connect(port) for _ in range(40)]
        drips = [asyncio.create_task(drip(r, w, SLOW_MESSAGE, 0.05)) for r, w in attackers]
        # Each connection past the eighth closed the client's own oldest one.
        await until(lambda: listener.stats.tcp_closed.get("per_client", 0) == 32, "the client's excess closed")
        assert len(listener.connections) == 8
        assert (await served(port)).rcode() == dns.rcode.SERVFAIL
        closed_early = await asyncio.gather(*drips)
        assert closed_early.count(True) >= 32


async def test_slowloris_is_closed_at_the_frame_deadline() -> None:
    """Bytes that keep coming do not keep a message that never ends: it must be whole within
    the frame timeout of its first byte (the idle timeout here is far longer)."""
    port = free_port()
    opts = ListenerOptions(tcp_frame_timeout=0.3, tcp_idle_timeout=60)
    async with in_process(corefile(port), options=opts) as server:
        reader, writer = await connect(port)
        # A 64-byte message, one byte every 100 ms: it would be whole after 6.4 s.
        assert await drip(reader, writer, trickle(b"\x00\x40" + bytes(62)), 0.1)
        assert listener_of(server).stats.tcp_closed == {"frame_deadline": 1}


async def test_slowloris_clients_leave_a_legitimate_client_served() -> None:
    """50 slowloris connections (one byte per interval each) against 20 slots."""
    port = free_port()
    opts = ListenerOptions(max_tcp_connections=20, max_tcp_per_client=0, tcp_frame_timeout=0.5)
    async with in_process(corefile(port), options=opts) as server:
        attackers = [await connect(port) for _ in range(50)]
        drips = [asyncio.create_task(drip(r, w, SLOW_MESSAGE, 0.2)) for r, w in attackers]
        for _ in range(5):
            assert (await served(port)).rcode() == dns.rcode.SERVFAIL
        assert all(await asyncio.gather(*drips))  # every one was closed before its message was whole
        closed = listener_of(server).stats.tcp_closed
        assert closed.get("frame_deadline", 0) + closed.get("evicted", 0) >= 50


async def test_only_a_whole_query_resets_the_idle_timeout() -> None:
    """Whole messages that are not queries, or a message trickling in under a long frame
    timeout, do not keep a connection open past the idle timeout; the counter says why."""
    port, http = free_port(), free_port()
    opts = ListenerOptions(tcp_idle_timeout=0.5, tcp_frame_timeout=60)
    not_a_query = frame(dns.message.make_response(dns.message.make_query("a.example.org.", "A")).to_wire())
    async with in_process(corefile(port, http=http), options=opts) as server:
        responses = drip(*await connect(port), [not_a_query] * 100, 0.1)  # 10 s of them at most
        trickling = drip(*await connect(port), SLOW_MESSAGE, 0.1)
        assert await asyncio.gather(responses, trickling) == [True, True]
        assert listener_of(server).stats.tcp_closed == {"idle": 2}
        _, text = await http_get(f"http://127.0.0.1:{http}/metrics")
    assert f'interkube_tcp_connections_closed_total{{reason="idle",server="dns://127.0.0.1:{port}"}} 2.0' in text
    assert "interkube_tcp_connections_max " in text


async def test_a_client_at_its_limit_gives_up_its_idle_connection_or_is_refused() -> None:
    up = await FakeUpstream().start()
    up.behaviour.gate = asyncio.Event()  # forwarded queries wait until the test says
    port = free_port()
    try:
        async with in_process(corefile(port, up.address), options=ListenerOptions(max_tcp_per_client=2)) as server:
            listener = listener_of(server)
            busy = [await connect(port) for _ in range(2)]
            for i, (_, writer) in enumerate(busy):
                writer.write(frame(query(f"n{i}.example.org.", qid=i + 1)))
            await until(lambda: len(up.queries) == 2, "both connections' queries in flight")
            # A third connection from the same address: nothing of its own is idle, so it is refused...
            reader, writer = await connect(port)
            assert await closed_by_server(reader)
            writer.close()
            assert listener.stats.tcp_closed == {"per_client": 1}
            # ...while another address is served (a zone not served here: answered at once).
            assert (await served(port, "other.net.")).rcode() == dns.rcode.REFUSED
            up.behaviour.gate.set()
            for i, (reader, _) in enumerate(busy):
                assert dns.message.from_wire(await read_frame(reader)).id == i + 1
            # The second one asks again, so the first is the one idle the longest: a new
            # connection from the same address takes its slot.
            busy[1][1].write(frame(query("other.net.", qid=7)))
            assert dns.message.from_wire(await read_frame(busy[1][0])).id == 7
            assert (await served(port, "other.net.", source=LOOPBACK)).rcode() == dns.rcode.REFUSED
            assert await closed_by_server(busy[0][0])
            assert listener.stats.tcp_closed == {"per_client": 2}
            busy[1][1].write(frame(query("other.net.", qid=8)))
            assert dns.message.from_wire(await read_frame(busy[1][0])).id == 8
            for _, w in busy:
                w.close()
    finally:
        await up.stop()


async def test_half_closed_tcp_client_gets_the_answers_in_flight() -> None:
    """A client that sends its queries and shuts down its side (a FIN) still gets every
    answer, the forwarded ones too, and then the server closes."""
    up = await FakeUpstream().start()
    up.behaviour.records = {(f"n{i}.example.org.", "A"): [f"192.0.2.{i}"] for i in range(3)}
    up.behaviour.delay = 0.2  # the FIN is in before the forwarded answers
    port = free_port()
    try:
        async with in_process(corefile(port, up.address)):
            reader, writer = await connect(port)
            asked = [query(f"n{i}.example.org.", qid=i + 1) for i in range(3)] + [query("other.net.", qid=9)]
            writer.write(b"".join(frame(q) for q in asked))
            writer.write_eof()
            got = {}
            for _ in asked:
                msg = dns.message.from_wire(await read_frame(reader))
                got[msg.id] = msg.rcode()
            assert got == {1: dns.rcode.NOERROR, 2: dns.rcode.NOERROR, 3: dns.rcode.NOERROR, 9: dns.rcode.REFUSED}
            assert await closed_by_server(reader)
            writer.close()
    finally:
        await up.stop()


# -- TLS ---------------------------------------------------------------------------------------

async def test_unfinished_tls_handshakes_hold_slots_and_make_way_for_a_client(pki: Pki,
                                                                              upstream: FakeUpstream) -> None:
    """Connections that never send a ClientHello count against the cap from accept (they once
    held descriptors outside it); the oldest make way for new ones, a valid client included."""
    port = free_port()
    opts = ListenerOptions(max_tcp_connections=8, tcp_idle_timeout=60, tls_handshake_timeout=60)
    async with in_process(dot_corefile(pki, port, upstream), options=opts) as server:
        listener = listener_of(server, "tls")
        silent = [await connect(port) for _ in range(12)]
        await until(lambda: len(listener.connections) == 8 and listener.stats.tcp_closed.get("evicted") == 4,
                    "the silent connections to be counted, and the four oldest closed")
        for reader, _ in silent[:4]:
            assert await closed_by_server(reader)
        resp = await dot_query(port, pki.client_context())
        assert resp.rcode() == dns.rcode.NOERROR and resp.answer
        assert len(listener.connections) <= 8
        for _, writer in silent:
            writer.close()


async def test_tls_handshakes_from_one_address_are_limited(pki: Pki, upstream: FakeUpstream) -> None:
    port = free_port()
    opts = ListenerOptions(max_tcp_per_client=3, tcp_idle_timeout=60, tls_handshake_timeout=60)
    async with in_process(dot_corefile(pki, port, upstream), options=opts) as server:
        listener = listener_of(server, "tls")
        silent = [await connect(port) for _ in range(5)]
        for reader, _ in silent[:2]:
            assert await closed_by_server(reader)
        assert listener.stats.tcp_closed == {"per_client": 2}
        # The same address's valid client takes the slot of its oldest silent connection.
        assert (await dot_query(port, pki.client_context())).answer
        for _, writer in silent:
            writer.close()


async def test_the_tls_handshake_has_a_shorter_deadline_than_idle(pki: Pki, upstream: FakeUpstream) -> None:
    port = free_port()
    opts = ListenerOptions(tls_handshake_timeout=0.3, tcp_idle_timeout=60)
    async with in_process(dot_corefile(pki, port, upstream), options=opts) as server:
        reader, writer = await connect(port)  # and then silence: no ClientHello
        assert await closed_by_server(reader)
        assert listener_of(server, "tls").stats.tcp_closed == {"handshake": 1}
        writer.close()


async def test_half_closed_tls_client_gets_the_answers_in_flight(pki: Pki, upstream: FakeUpstream) -> None:
    """Over TLS the client's close_notify is its half-close: the forwarded answers still come,
    then the server's close_notify."""
    upstream.behaviour.delay = 0.2
    port = free_port()
    async with in_process(dot_corefile(pki, port, upstream)):
        reader, writer = await connect(port)
        tls = pki.client_context().wrap_bio(incoming := ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(),
                                            server_hostname=SERVER_NAME)

        async def send() -> None:
            writer.write(outgoing.read())
            await writer.drain()

        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await send()
                incoming.write(await asyncio.wait_for(reader.read(65536), 10))
        tls.write(frame(query(NAME, qid=1)) + frame(query(NAME, qid=2)))
        with pytest.raises(ssl.SSLWantReadError):
            tls.unwrap()  # our close_notify goes out: we send nothing more
        await send()
        plain = b""
        while data := await asyncio.wait_for(reader.read(65536), 10):
            incoming.write(data)
            try:
                while chunk := tls.read(65536):
                    plain += chunk
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                pass
        writer.close()
    ids = []
    while plain:
        size = int.from_bytes(plain[:2], "big")
        msg = dns.message.from_wire(plain[2:2 + size])
        assert msg.rcode() == dns.rcode.NOERROR and msg.answer
        ids.append(msg.id)
        plain = plain[2 + size:]
    assert sorted(ids) == [1, 2]

"""Listeners on real loopback sockets: UDP, TCP framing and pipelining, IPv6, EDNS, truncation,
idle timeout, connection cap (the idle longest closed for a new connection), slow clients, and
the early answers (FORMERR, NOTIMP, BADVERS). Abusive TCP and TLS clients: test_connection_limits."""

from __future__ import annotations

import asyncio
import socket

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import pytest

from interkube.pkg.framing import frame
from interkube.server.listeners import ListenerOptions
from testkit.fakeupstream import FakeUpstream
from testkit.servers import aquery, free_port, in_process, read_frame
from testkit.waiting import until


def corefile(port: int, host: str = "127.0.0.1", upstream: str | None = None) -> str:
    fwd = f"\n    forward . {upstream}" if upstream else ""
    return f"example.org:{port} {{\n    bind {host}\n    errors{fwd}\n}}\n"


async def udp_exchange(data: bytes, port: int, host: str = "127.0.0.1", timeout: float = 1.0) -> bytes | None:
    """Send raw bytes over UDP; the reply, or None if nothing came back within ``timeout``."""
    loop = asyncio.get_running_loop()
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        await loop.sock_connect(s, (host, port))
        await loop.sock_sendall(s, data)
        try:
            return await asyncio.wait_for(loop.sock_recv(s, 65535), timeout)
        except TimeoutError:
            return None


async def test_udp_and_tcp_answer_and_echo_id_and_case() -> None:
    port = free_port()
    async with in_process(corefile(port)):
        for tcp in (False, True):
            r = await aquery("WwW.ExAmPlE.oRg.", "A", port, tcp=tcp)
            assert r.question[0].name.to_text() == "WwW.ExAmPlE.oRg."
            # Nothing answers in this chain: SERVFAIL from the end of the chain, as CoreDNS.
            assert r.rcode() == dns.rcode.SERVFAIL
        refused = await aquery("other.net.", "A", port)
        assert refused.rcode() == dns.rcode.REFUSED


async def test_ipv6_listener() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("::1 is not configured")
    port = free_port("::1")
    async with in_process(corefile(port, "::1")):
        r = await aquery("a.example.org.", "A", port, host="::1")
        assert r.rcode() == dns.rcode.SERVFAIL
        r = await aquery("a.example.org.", "A", port, host="::1", tcp=True)
        assert r.rcode() == dns.rcode.SERVFAIL


async def test_edns_is_advertised_and_echoed() -> None:
    port = free_port()
    async with in_process(corefile(port)):
        with_edns = await aquery("a.example.org.", "A", port, use_edns=0, payload=4096, want_dnssec=True)
        assert with_edns.edns == 0 and with_edns.payload == 1232 and with_edns.ednsflags & dns.flags.DO
        without = await aquery("a.example.org.", "A", port, use_edns=False)
        assert without.edns == -1


async def test_tcp_pipelining_answers_every_query_on_one_connection() -> None:
    port = free_port()
    up = await FakeUpstream().start()
    up.behaviour.records = {(f"n{i}.example.org.", "A"): [f"192.0.2.{i}"] for i in range(30)}
    try:
        async with in_process(corefile(port, upstream=up.address)):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            queries = {}
            for i in range(30):
                m = dns.message.make_query(f"n{i}.example.org.", "A")
                queries[m.id] = i
            # All queries in one write: the server must take every frame out of one read.
            writer.write(b"".join(frame(dns.message.make_query(f"n{i}.example.org.", "A", id=qid).to_wire())
                                  for qid, i in queries.items()))
            await writer.drain()
            seen = {}
            for _ in queries:
                r = dns.message.from_wire(await read_frame(reader))
                seen[r.id] = r.answer[0][0].address
            assert seen == {qid: f"192.0.2.{i}" for qid, i in queries.items()}
            writer.close()
    finally:
        await up.stop()


async def test_tcp_query_split_across_writes() -> None:
    port = free_port()
    async with in_process(corefile(port)):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        data = frame(dns.message.make_query("a.example.org.", "A", id=99).to_wire())
        for i in range(len(data)):
            writer.write(data[i:i + 1])
            await writer.drain()
        r = dns.message.from_wire(await read_frame(reader))
        assert r.id == 99
        writer.close()


async def test_lying_length_prefix_and_half_open_connection_cost_nothing_lasting() -> None:
    port = free_port()
    opts = ListenerOptions(tcp_idle_timeout=0.3)
    async with in_process(corefile(port), options=opts) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\xff\xff" + b"\x00" * 10)  # claims 65535 bytes, sends 10, then waits
        await writer.drain()
        # Others are served meanwhile.
        r = await aquery("a.example.org.", "A", port, tcp=True)
        assert r.rcode() == dns.rcode.SERVFAIL
        # The idle timeout closes the lying connection.
        assert await asyncio.wait_for(reader.read(), 5) == b""
        listener = next(iter(server.instance.listeners.values()))  # type: ignore[attr-defined]
        assert listener.stats.tcp_idle_closed >= 1
        assert len(listener.connections) == 0


async def test_connection_cap_closes_the_connection_idle_longest() -> None:
    """A full table makes room for a new connection (RFC 7766 6.2.3): the one whose last query
    is oldest is closed; the other stays."""
    port = free_port()
    async with in_process(corefile(port), options=ListenerOptions(max_tcp_connections=2)) as server:
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        for reader, writer in conns:  # each asks and is answered, the first one first
            writer.write(frame(dns.message.make_query("a.example.org.", "A").to_wire()))
            await read_frame(reader)
        reader3, writer3 = await asyncio.open_connection("127.0.0.1", port)
        writer3.write(frame(dns.message.make_query("a.example.org.", "A", id=3).to_wire()))
        assert dns.message.from_wire(await read_frame(reader3)).id == 3
        assert await asyncio.wait_for(conns[0][0].read(), 5) == b""  # closed to make room
        conns[1][1].write(frame(dns.message.make_query("a.example.org.", "A", id=2).to_wire()))
        assert dns.message.from_wire(await read_frame(conns[1][0])).id == 2  # still served
        listener = next(iter(server.instance.listeners.values()))  # type: ignore[attr-defined]
        assert listener.stats.tcp_closed == {"evicted": 1}
        assert len(listener.connections) == 2
        for _, w in [*conns, (reader3, writer3)]:
            w.close()


async def test_connection_cap_refuses_when_every_connection_is_busy() -> None:
    up = await FakeUpstream().start()
    up.behaviour.gate = asyncio.Event()  # forwarded queries stay in flight until it is set
    port = free_port()
    try:
        async with in_process(corefile(port, upstream=up.address),
                              options=ListenerOptions(max_tcp_connections=2)) as server:
            conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
            for i, (_, writer) in enumerate(conns):
                writer.write(frame(dns.message.make_query(f"n{i}.example.org.", "A", id=i + 1).to_wire()))
            await until(lambda: len(up.queries) == 2, "both queries in flight")
            reader3, writer3 = await asyncio.open_connection("127.0.0.1", port)
            assert await asyncio.wait_for(reader3.read(), 5) == b""  # closed at once
            listener = next(iter(server.instance.listeners.values()))  # type: ignore[attr-defined]
            assert listener.stats.tcp_refused == 1
            up.behaviour.gate.set()
            for i, (reader, _) in enumerate(conns):  # the busy ones were not touched
                assert dns.message.from_wire(await read_frame(reader)).id == i + 1
            for _, w in conns:
                w.close()
            writer3.close()
    finally:
        await up.stop()


async def test_client_that_never_reads_does_not_block_others() -> None:
    port = free_port()
    async with in_process(corefile(port)):
        # A client that writes queries as fast as it can and never reads its answers.
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        payload = frame(dns.message.make_query("a.example.org.", "TXT").to_wire()) * 2000
        sent = 0
        try:
            while sent < len(payload):
                sent += sock.send(payload[sent:sent + 65536])
        except BlockingIOError:
            pass  # its buffers are full: the server has stopped reading from it
        # Everyone else still gets answers over UDP and TCP.
        for tcp in (False, True):
            r = await aquery("b.example.org.", "A", port, tcp=tcp)
            assert r.rcode() == dns.rcode.SERVFAIL
        sock.close()


async def test_truncation_over_udp_and_full_answer_over_tcp() -> None:
    port = free_port()
    up = await FakeUpstream().start()
    up.behaviour.records = {("big.example.org.", "TXT"): ['"' + "x" * 200 + f'{i}"' for i in range(8)]}
    try:
        async with in_process(corefile(port, upstream=up.address)):
            small = await aquery("big.example.org.", "TXT", port, use_edns=False)
            # As CoreDNS: the records that fit in 512 bytes, and TC so the client asks over TCP.
            assert small.flags & dns.flags.TC and len(small.answer[0]) == 2
            fits = await aquery("big.example.org.", "TXT", port, use_edns=0, payload=4096)
            assert not fits.flags & dns.flags.TC and len(fits.answer[0]) == 8
            full = await aquery("big.example.org.", "TXT", port, tcp=True, use_edns=False)
            assert not full.flags & dns.flags.TC and len(full.answer[0]) == 8
    finally:
        await up.stop()


async def test_early_answers_formerr_notimp_badvers_and_drops() -> None:
    port = free_port()
    async with in_process(corefile(port)):
        # Below a header: dropped.
        assert await udp_exchange(b"\x01\x02\x03", port, timeout=0.3) is None
        # A response (QR=1): dropped.
        resp = dns.message.make_response(dns.message.make_query("a.example.org.", "A"))
        assert await udp_exchange(resp.to_wire(), port, timeout=0.3) is None
        # A readable header over garbage: FORMERR with the same ID.
        garbage = b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x3fabc"
        out = await udp_exchange(garbage, port)
        assert out is not None and out[:2] == b"\xab\xcd" and out[3] & 0x0F == dns.rcode.FORMERR
        # Two questions: FORMERR.
        two = dns.message.make_query("a.example.org.", "A")
        two.question.append(dns.message.make_query("b.example.org.", "A").question[0])
        out = await udp_exchange(two.to_wire(), port)
        assert out is not None and dns.message.from_wire(out).rcode() == dns.rcode.FORMERR
        # NOTIFY: NOTIMP.
        notify = dns.message.make_query("a.example.org.", "SOA")
        notify.set_opcode(dns.opcode.NOTIFY)
        out = await udp_exchange(notify.to_wire(), port)
        assert out is not None and dns.message.from_wire(out).rcode() == dns.rcode.NOTIMP
        # EDNS version 1: BADVERS.
        v1 = dns.message.make_query("a.example.org.", "A", use_edns=1)
        out = await udp_exchange(v1.to_wire(), port)
        assert out is not None and dns.message.from_wire(out).rcode() == dns.rcode.BADVERS
        # A compressed question name is still answered (the slow path normalises it).
        plain = dns.message.make_query("a.example.org.", "A", use_edns=False).to_wire()
        compressed = plain[:12] + b"\xc0\x0e" + plain[-4:]  # points into itself: malformed loop
        out = await udp_exchange(compressed, port)
        assert out is not None and out[3] & 0x0F == dns.rcode.FORMERR
        # And after all that, the server is fine.
        r = await aquery("a.example.org.", "A", port)
        assert r.rcode() == dns.rcode.SERVFAIL


def test_pure_python_udp_loop_answers_like_the_batched_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The C helper is optional: without it the same answers come from the Python loop."""
    from testkit.servers import interkube_process, query

    port = free_port()
    core = tmp_path / "Corefile"
    core.write_text(corefile(port))
    answers = {}
    for env in ({}, {"INTERKUBE_NO_UDPFAST": "1"}):
        with interkube_process(core, port, env=env):
            r = query("WwW.Example.org.", "A", port)
            r2 = query("other.net.", "A", port)
            answers[bool(env)] = (r.rcode(), r.question[0].name.to_text(), r2.rcode())
    assert answers[False] == answers[True] == (dns.rcode.SERVFAIL, "WwW.Example.org.", dns.rcode.REFUSED)

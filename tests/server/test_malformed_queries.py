"""Queries whose header and question are fine but whose EDNS data is not: FORMERR, decided once at
admission, counted, logged at most once a minute, never a traceback (issue 12, section 9).

Before, such a query passed the fast parser and failed in dnspython's parse inside the first
handler that needed it: SERVFAIL and an ERROR traceback for every packet, for names answered
from memory (cluster.all) and forwarded names alike. These tests send each kind to the
built-in default configuration, as `interkube serve` runs it, on free ports.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import struct

import dns.message
import dns.rcode
import pytest

from interkube.dns.reader import REASON_ECS, REASON_OPT, REASON_OPTION
from interkube.pkg.framing import frame
from interkube.plugin.metrics import MALFORMED_QUERIES
from interkube.server import dispatch
from interkube.server.dispatch import RateLimitedLog
from interkube.server.main import builtin_default
from testkit.dig import dig, needs_dig, status
from testkit.servers import LOOPBACK, aquery, free_port, http_get, in_process, read_frame

#: A name answered from memory (clusterset over two kubernetes snapshots) and two forwarded ones
#: (to the default's local and remote "cluster DNS" blocks).
NAMES = ["inventory.shop.svc.cluster.all.", "kube-dns.kube-system.svc.cluster.local.",
         "x.remote.svc.cluster.local."]


def with_options(name: str, options: bytes) -> bytes:
    """An EDNS query for ``name`` whose OPT record carries ``options`` as given."""
    wire = dns.message.make_query(name, "A", use_edns=0).to_wire()
    assert wire.endswith(b"\x00\x00")  # the OPT record, last, without options
    return wire[:-2] + struct.pack("!H", len(options)) + options


def ecs(family: int, source: int, address: bytes) -> bytes:
    body = struct.pack("!HBB", family, source, 0) + address
    return struct.pack("!HH", 8, len(body)) + body


def two_opts(name: str) -> bytes:
    wire = bytearray(with_options(name, b""))
    wire[10:12] = b"\x00\x02"
    return bytes(wire) + wire[-11:]


def opt_not_at_root(name: str) -> bytes:
    wire = with_options(name, b"")
    return wire[:-11] + b"\xc0\x0c" + wire[-10:]  # owned by the question name


#: Each class of malformed EDNS data, and the reason it is counted under.
CASES = {
    "ECS family 3": (lambda n: with_options(n, ecs(3, 24, b"\x0a\x00\x00")), REASON_ECS),
    "ECS /33 for IPv4": (lambda n: with_options(n, ecs(1, 33, b"\x0a\x00\x00\x00\x00")), REASON_ECS),
    "ECS /129 for IPv6": (lambda n: with_options(n, ecs(2, 129, b"\x20" + bytes(16))), REASON_ECS),
    "option past the OPT data": (lambda n: with_options(n, struct.pack("!HH", 10, 20) + b"\x01" * 8), REASON_OPTION),
    "two OPT records": (two_opts, REASON_OPT),
    "OPT not at the root": (opt_not_at_root, REASON_OPT),
}


async def udp(port: int, wire: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect((LOOPBACK, port))
        await loop.sock_sendall(sock, wire)
        return await asyncio.wait_for(loop.sock_recv(sock, 65535), 3.0)


async def tcp(port: int, wire: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        writer.write(frame(wire))
        return await read_frame(reader, 3.0)
    finally:
        writer.close()


def assert_formerr(query: bytes, name: str, resp: bytes) -> None:
    """FORMERR as CoreDNS writes it: the ID, QR, RD echoed, the question, no OPT record."""
    assert resp[:2] == query[:2]
    msg = dns.message.from_wire(resp)
    assert msg.rcode() == dns.rcode.FORMERR and msg.flags & 0x8000 and msg.flags & 0x0100
    assert [q.name.to_text() for q in msg.question] == [name]
    assert msg.edns < 0 and not msg.answer and not msg.additional


def builtin_default_on_free_ports() -> tuple[str, int]:
    """The built-in default's Corefile, its three ports moved to free ones; the front port."""
    text = builtin_default().text or ""
    front = free_port()
    for fixed in ("5353", "5354", "5355"):
        text = text.replace(fixed, str(front if fixed == "5353" else free_port()))
    return text, front


@pytest.mark.parametrize("case", sorted(CASES))
async def test_malformed_edns_is_formerr_without_a_traceback(
        case: str, interkube_caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatch, "malformed_log", RateLimitedLog(dispatch.MALFORMED_LOG_INTERVAL))
    make, reason = CASES[case]
    corefile, port = builtin_default_on_free_ports()
    async with in_process(corefile):
        server = f"dns://127.0.0.1:{port}"
        before = MALFORMED_QUERIES.counts.get((server, reason), 0)
        sent = 0
        for name in NAMES:
            for send in (udp, tcp):
                for _ in range(2):  # the repeat is answered from what admission remembered
                    query = make(name)
                    assert_formerr(query, name, await send(port, query))
                    sent += 1
        assert MALFORMED_QUERIES.counts.get((server, reason), 0) - before == sent
        # The server still answers a good query, from memory and forwarded.
        good = await aquery(NAMES[0], "A", port, use_edns=0)
        assert good.rcode() == dns.rcode.NOERROR and good.answer
        good = await aquery(NAMES[1], "A", port, use_edns=0, tcp=True)
        assert good.rcode() == dns.rcode.NOERROR and good.answer
    records = interkube_caplog.records
    assert not [r for r in records if r.exc_info or r.levelno >= logging.ERROR], \
        [r.getMessage() for r in records if r.exc_info or r.levelno >= logging.ERROR]
    assert "Traceback" not in interkube_caplog.text
    lines = [r.getMessage() for r in records if "malformed query" in r.getMessage()]
    assert len(lines) == 1 and "FORMERR" in lines[0], lines  # twelve packets, one line


async def test_the_count_is_published_at_scrape() -> None:
    port, http = free_port(), free_port()
    core = (f"example.org:{port} {{\n bind 127.0.0.1\n prometheus 127.0.0.1:{http}\n"
            f" hosts {{\n  192.0.2.10 www.example.org\n }}\n}}\n")
    async with in_process(core):
        for _ in range(3):
            await udp(port, with_options("www.example.org.", ecs(3, 24, b"\x0a\x00\x00")))
        await udp(port, two_opts("www.example.org."))
        status, text = await http_get(f"http://127.0.0.1:{http}/metrics")
    assert status == 200
    found = dict(re.findall(r'^interkube_dns_malformed_queries_total\{(.*)\} (\S+)$', text, re.MULTILINE))
    server = f'server="dns://127.0.0.1:{port}"'
    assert float(found[f'reason="ecs",{server}']) == 3, found
    assert float(found[f'reason="opt",{server}']) == 1, found


def test_the_log_line_is_rate_limited() -> None:
    now = [100.0]
    limited = RateLimitedLog(60.0, clock=lambda: now[0])
    logger = logging.getLogger("interkube.server")
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    keep = Keep(logging.INFO)
    logger.addHandler(keep)
    saved = logger.level
    logger.setLevel(logging.INFO)
    try:
        for t in (100.0, 110.0, 159.9, 160.0, 170.0, 300.0):
            now[0] = t
            limited.info("malformed %s", t)
    finally:
        logger.removeHandler(keep)
        logger.setLevel(saved)
    assert seen == ["malformed 100.0", "malformed 160.0 (and 2 more since the last such line)",
                    "malformed 300.0 (and 1 more since the last such line)"]


@needs_dig
async def test_client_subnet_opt_outs_are_answered_as_coredns_answers_them() -> None:
    """`dig +subnet=0` asks that no client address be used: BIND 9.18's dig sends family 1 with
    a /0 prefix, older ones (and other clients) family 0 with empty prefixes, which RFC 7871
    does not define but miekg/dns (CoreDNS) reads. Both get the answer, from memory and
    forwarded, and neither is counted as malformed."""
    corefile, port = builtin_default_on_free_ports()
    async with in_process(corefile):
        server = f"dns://127.0.0.1:{port}"
        before = sum(n for (s, _), n in MALFORMED_QUERIES.counts.items() if s == server)
        for name in NAMES[:2]:
            out = await asyncio.to_thread(dig, port, "+subnet=0", "A", name)
            assert status(out) == "NOERROR" and "ANSWER SECTION" in out, out
            for send in (udp, tcp):
                query = with_options(name, ecs(0, 0, b""))
                raw = await send(port, query)
                resp = dns.message.from_wire(raw)
                assert raw[:2] == query[:2] and resp.rcode() == dns.rcode.NOERROR and resp.answer, resp
        assert sum(n for (s, _), n in MALFORMED_QUERIES.counts.items() if s == server) == before

"""Arbitrary bytes never take a listener down: FORMERR where a header is readable, silence below
12 bytes or for responses, and TCP frames that lie cost nothing lasting."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import dns.edns
import dns.exception
import dns.message
import dns.rcode
import dns.wire
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interkube.corefile.parser import parse_text
from interkube.dns.reader import ECS_OPT_OUT
from interkube.plugin.request import Request
from interkube.plugin.services import Services
from interkube.server.dispatch import Dispatcher
from interkube.server.runtime import build
from testkit.servers import free_port, interkube_process, process_output, query

HEADER = st.builds(
    lambda qid, flags, counts: struct.pack("!HH", qid, flags) + struct.pack("!4H", *counts),
    st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.tuples(*[st.integers(0, 3)] * 4))


def with_options(name: str, options: bytes) -> bytes:
    """An EDNS query whose OPT record carries ``options`` as given (well-formed or not)."""
    wire = dns.message.make_query(name, "A", use_edns=0).to_wire()
    return wire[:-2] + struct.pack("!H", len(options)) + options


# Mostly garbage, sometimes a plausible header followed by garbage, sometimes a real query
# mangled, sometimes a fine query with EDNS options that may not be (a Client Subnet option,
# code 8, half the time).
PACKETS = st.one_of(
    st.binary(max_size=600),
    st.builds(lambda h, body: h + body, HEADER, st.binary(max_size=300)),
    st.builds(lambda name, cut, junk: dns.message.make_query(name, "A").to_wire()[:cut] + junk,
              st.sampled_from(["a.example.org.", "x.other.", "."]), st.integers(0, 60), st.binary(max_size=20)),
    st.builds(with_options, st.sampled_from(["a.example.org.", "x.other."]),
              st.one_of(st.binary(max_size=40),
                        st.builds(lambda body: struct.pack("!HH", 8, len(body)) + body, st.binary(max_size=20)))),
)


def expected_kind(data: bytes) -> str:
    """What a correct server does with these bytes: 'drop', 'formerr', or 'answer'."""
    if len(data) < 12 or data[2] & 0x80:
        return "drop"
    if readable(data):
        return "answer"
    if ECS_OPT_OUT in data and opt_out_only(data):
        return "answer"
    return "formerr"


def opt_out_only(data: bytes) -> bool:
    """Whether dnspython reads ``data`` once its Client Subnet opt-outs of family 0 (older
    `dig +subnet=0`), which it cannot read and the server accepts as CoreDNS does, are set
    aside: every other Client Subnet option must still be one dnspython reads."""
    dns.edns.register_type(dns.edns.GenericOption, dns.edns.OptionType.ECS)
    try:
        msg = dns.message.from_wire(data, ignore_trailing=True)
    except (dns.exception.DNSException, ValueError, IndexError, UnicodeError):
        return False
    finally:
        dns.edns.register_type(dns.edns.ECSOption, dns.edns.OptionType.ECS)
    for option in msg.options:
        if option.otype == dns.edns.OptionType.ECS and option.to_wire() != ECS_OPT_OUT[4:]:
            try:
                dns.edns.ECSOption.from_wire_parser(option.otype, dns.wire.Parser(option.to_wire() or b""))
            except (dns.exception.DNSException, ValueError, IndexError):
                return False
    return True


def readable(data: bytes) -> bool:
    try:
        dns.message.from_wire(data, ignore_trailing=True)
    except (dns.exception.DNSException, ValueError, IndexError, UnicodeError):
        return False
    return True


def check_response(data: bytes, resp: bytes | None) -> None:
    kind = expected_kind(data)
    if kind == "drop":
        assert resp is None
        return
    assert resp is not None and len(resp) >= 12
    assert resp[:2] == data[:2]          # ID echoed
    assert resp[2] & 0x80                # QR set
    if kind == "formerr":
        assert resp[3] & 0x0F == dns.rcode.FORMERR


@pytest.fixture(scope="module")
def dispatcher() -> Dispatcher:
    blocks = parse_text("example.org:53 {\n errors\n}\n")
    built = build(blocks, "Corefile", Services())
    return Dispatcher(next(iter(built.chains.values())))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(PACKETS)
def test_dispatcher_never_raises(dispatcher: Dispatcher, data: bytes) -> None:
    from interkube.dns.wire import parse_query

    async def run() -> bytes | None:
        q = parse_query(data)
        if q is None:
            return await dispatcher.serve_unparsed(data, ("127.0.0.1", 5), "udp")
        req = Request(data, q, ("127.0.0.1", 5), "udp")
        fast = dispatcher.fast(req)
        if fast is not None:
            return fast
        return await dispatcher.serve(req)

    check_response(data, asyncio.run(run()))


# --- against a real process, over real sockets ------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, object]]:
    port = free_port()
    core: Path = tmp_path_factory.mktemp("bad") / "Corefile"
    core.write_text(f"example.org:{port} {{\n bind 127.0.0.1\n errors\n}}\n")
    with interkube_process(core, port) as proc:
        yield port, proc


def udp_send(port: int, data: bytes, timeout: float) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(data, ("127.0.0.1", port))
        try:
            return s.recv(65535)
        except TimeoutError:
            return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(PACKETS)
def test_udp_listener_survives_arbitrary_bytes(server: tuple[int, object], data: bytes) -> None:
    port, _ = server
    kind = expected_kind(data)
    resp = udp_send(port, data, timeout=0.05 if kind == "drop" else 2.0)
    check_response(data, resp)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(PACKETS, min_size=1, max_size=5), st.booleans())
def test_tcp_listener_survives_arbitrary_frames(server: tuple[int, object], frames: list[bytes],
                                                lie_at_end: bool) -> None:
    port, _ = server
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        stream = b"".join(len(f).to_bytes(2, "big") + f for f in frames)
        if lie_at_end:
            stream += b"\x10\x00" + b"\x00" * 5  # a frame that claims 4096 bytes and stops
        s.sendall(stream)
        wanted = sum(1 for f in frames if expected_kind(f) != "drop")
        got: list[bytes] = []
        buf = b""
        while len(got) < wanted:
            chunk = s.recv(65535)
            assert chunk, "server closed the connection while answers were owed"
            buf += chunk
            while len(buf) >= 2 and len(buf) >= 2 + int.from_bytes(buf[:2], "big"):
                n = int.from_bytes(buf[:2], "big")
                got.append(buf[2:2 + n])
                buf = buf[2 + n:]
        answered_ids = sorted(r[:2] for r in got)
        assert answered_ids == sorted(f[:2] for f in frames if expected_kind(f) != "drop")
        by_id = {}
        for f in frames:
            if expected_kind(f) != "drop":
                by_id.setdefault(f[:2], []).append(f)
        for r in got:
            assert r[2] & 0x80
            if all(expected_kind(f) == "formerr" for f in by_id[r[:2]]):
                assert r[3] & 0x0F == dns.rcode.FORMERR


def test_server_is_healthy_after_the_fuzzing(server: tuple[int, object]) -> None:
    port, proc = server
    r = query("a.example.org.", "A", port)
    assert r.rcode() == dns.rcode.SERVFAIL
    r = query("a.example.org.", "A", port, tcp=True)
    assert r.rcode() == dns.rcode.SERVFAIL
    assert proc.poll() is None  # type: ignore[attr-defined]
    out = process_output(proc)  # type: ignore[arg-type]
    assert "Traceback" not in out and "dispatcher failed" not in out, out

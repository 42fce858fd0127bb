"""Several `forward` directives in one server block (CoreDNS 1.15's chain), `failover`, `next`,
`next_on_nodata`, `except`, and the per-query options (max_connect_attempts, read_timeout,
source_address, max_age), against scripted upstreams on loopback.

The same behaviours are compared with CoreDNS itself in tests/peers/test_differential_forward.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import dns.message
import dns.rcode
import dns.rrset
import pytest

from interkube.corefile.parser import parse_text
from interkube.plugin.services import Services
from interkube.plugins.forward.handler import ForwardHandler
from interkube.server.runtime import build
from testkit.fakeupstream import FakeUpstream
from testkit.servers import aquery, free_port, in_process
from testkit.waiting import until


@pytest.fixture
async def ups() -> AsyncIterator[list[FakeUpstream]]:
    """Three upstreams that each answer a.example. A with their own address (192.0.2.1, .2, .3),
    so that an answer shows which one it came from."""
    fakes = [await FakeUpstream().start() for _ in range(3)]
    for i, fake in enumerate(fakes, 1):
        fake.behaviour.records = {
            ("a.example.", "A"): [f"192.0.2.{i}"],
            ("a.lab.example.", "A"): [f"198.51.100.{i}"],
            ("nodata.example.", "TXT"): ["x"],
        }
    yield fakes
    for fake in fakes:
        await fake.stop()


def block(port: int, body: str) -> str:
    return f".:{port} {{\n bind 127.0.0.1\n{body}}}\n"


async def address(name: str, port: int, rdtype: str = "A") -> tuple[str, list[str]]:
    resp = await aquery(name, rdtype, port)
    return dns.rcode.to_text(resp.rcode()), [rd.to_text() for rrset in resp.answer for rd in rrset]


def test_several_forwards_are_chained_in_corefile_order() -> None:
    blocks = parse_text(". {\n forward lab.example 127.0.0.1:5301\n cache\n forward example 127.0.0.1:5302\n"
                        " forward . 127.0.0.1:5303\n}\n")
    built = build(blocks, "Corefile", Services())
    forwards = [h for h in built.handlers if isinstance(h, ForwardHandler)]
    assert [f.cfg.from_zones for f in forwards] == [("lab.example.",), ("example.",), (".",)]
    assert forwards[0].next is forwards[1] and forwards[1].next is forwards[2]
    assert not isinstance(forwards[2].next, ForwardHandler)


async def test_per_domain_forwards_take_the_first_that_matches(ups: list[FakeUpstream]) -> None:
    a, b, c = ups
    port = free_port()
    body = (f" forward lab.example {a.address}\n forward example {b.address}\n forward . {c.address}\n")
    async with in_process(block(port, body)):
        assert await address("a.lab.example.", port) == ("NOERROR", ["198.51.100.1"])
        assert await address("a.example.", port) == ("NOERROR", ["192.0.2.2"])
        assert (await address("other.test.", port))[0] == "NXDOMAIN"
        assert [f.count() for f in ups] == [1, 1, 1]


async def test_a_parent_listed_first_takes_the_subdomain_too(ups: list[FakeUpstream]) -> None:
    # The forward README's warning: forwards are evaluated in the order they are listed.
    a, b, _ = ups
    port = free_port()
    async with in_process(block(port, f" forward example {a.address}\n forward lab.example {b.address}\n")):
        assert await address("a.lab.example.", port) == ("NOERROR", ["198.51.100.1"])
        assert b.count() == 0


async def test_next_goes_down_the_chain_and_the_last_answer_stands(ups: list[FakeUpstream]) -> None:
    a, b, c = ups
    a.behaviour.rcode = b.behaviour.rcode = dns.rcode.NXDOMAIN
    c.behaviour.rcode = dns.rcode.NXDOMAIN
    port = free_port()
    body = (f" forward . {a.address} {{\n  next NXDOMAIN\n }}\n forward . {b.address} {{\n  next NXDOMAIN\n }}\n"
            f" forward . {c.address} {{\n  next NXDOMAIN\n }}\n")
    async with in_process(block(port, body)):
        assert (await address("a.example.", port))[0] == "NXDOMAIN"
        assert [f.count() for f in ups] == [1, 1, 1]
        c.behaviour.rcode = None
        b.behaviour.rcode = None
        assert await address("a.example.", port) == ("NOERROR", ["192.0.2.2"])
        assert [f.count() for f in ups] == [2, 2, 1]


async def test_next_skips_a_forward_that_does_not_match(ups: list[FakeUpstream]) -> None:
    a, b, c = ups
    a.behaviour.rcode = dns.rcode.SERVFAIL
    port = free_port()
    body = (f" forward . {a.address} {{\n  next SERVFAIL\n }}\n forward other.test {b.address}\n"
            f" forward . {c.address}\n")
    async with in_process(block(port, body)):
        assert await address("a.example.", port) == ("NOERROR", ["192.0.2.3"])
        assert b.count() == 0


async def test_next_on_nodata(ups: list[FakeUpstream]) -> None:
    a, b, _ = ups
    b.behaviour.records[("nodata.example.", "A")] = ["203.0.113.9"]
    port = free_port()
    body = f" forward . {a.address} {{\n  next_on_nodata\n }}\n forward . {b.address}\n"
    async with in_process(block(port, body)):
        # a has TXT but no A at nodata.example.: NOERROR and no answer, so b is asked.
        assert await address("nodata.example.", port) == ("NOERROR", ["203.0.113.9"])
        # NXDOMAIN is not NODATA: a's answer stands.
        assert (await address("missing.example.", port))[0] == "NXDOMAIN"
        assert b.count() == 1


async def test_failover_tries_the_next_upstream_and_keeps_the_last_answer(ups: list[FakeUpstream]) -> None:
    a, b, c = ups
    a.behaviour.rcode = dns.rcode.SERVFAIL
    b.behaviour.rcode = dns.rcode.REFUSED
    port = free_port()
    body = (f" forward . {a.address} {b.address} {c.address} {{\n  policy sequential\n"
            "  failover SERVFAIL REFUSED\n }\n")
    async with in_process(block(port, body)):
        assert await address("a.example.", port) == ("NOERROR", ["192.0.2.3"])
        assert [f.count() for f in ups] == [1, 1, 1]
        c.behaviour.rcode = dns.rcode.SERVFAIL
        # Every upstream failed over: the last answer is the client's.
        assert (await address("a.example.", port))[0] == "SERVFAIL"
        assert [f.count() for f in ups] == [2, 2, 2]


async def test_without_failover_an_error_rcode_is_the_answer(ups: list[FakeUpstream]) -> None:
    a, b, _ = ups
    a.behaviour.rcode = dns.rcode.REFUSED
    port = free_port()
    async with in_process(block(port, f" forward . {a.address} {b.address} {{\n  policy sequential\n }}\n")):
        assert (await address("a.example.", port))[0] == "REFUSED"
        assert b.count() == 0


async def test_failover_then_next_to_the_next_forward(ups: list[FakeUpstream]) -> None:
    a, b, c = ups
    a.behaviour.rcode = b.behaviour.rcode = dns.rcode.SERVFAIL
    port = free_port()
    body = (f" forward . {a.address} {b.address} {{\n  policy sequential\n  failover SERVFAIL\n  next SERVFAIL\n }}\n"
            f" forward . {c.address}\n")
    async with in_process(block(port, body)):
        assert await address("a.example.", port) == ("NOERROR", ["192.0.2.3"])
        assert [f.count() for f in ups] == [1, 1, 1]


async def test_except_passes_to_the_next_forward_but_never_excludes_from_itself(ups: list[FakeUpstream]) -> None:
    a, b, _ = ups
    port = free_port()
    body = (f" forward example {a.address} {{\n  except lab.example example\n }}\n"
            f" forward . {b.address}\n")
    async with in_process(block(port, body)):
        assert await address("a.lab.example.", port) == ("NOERROR", ["198.51.100.2"])
        # `except example` does not exclude FROM itself (CoreDNS's isAllowedDomain).
        assert (await address("example.", port))[0] == "NXDOMAIN" and a.count() == 1
        assert await address("a.example.", port) == ("NOERROR", ["192.0.2.2"])


def _closed_port() -> int:
    """A loopback port nothing listens on (UDP): queries to it are refused at once (ICMP)."""
    return free_port()


async def test_max_connect_attempts_caps_the_failed_attempts(ups: list[FakeUpstream]) -> None:
    good = ups[0]
    dead = f"127.0.0.1:{_closed_port()}"
    port = free_port()
    body = (f" forward . {dead} {good.address} {{\n  policy sequential\n  max_connect_attempts 1\n"
            "  max_fails 0\n }\n")
    async with in_process(block(port, body)):
        assert (await address("a.example.", port))[0] == "SERVFAIL"
        assert good.count() == 0
    port = free_port()
    async with in_process(block(port, body.replace("max_connect_attempts 1", "max_connect_attempts 2"))):
        assert await address("a.example.", port) == ("NOERROR", ["192.0.2.1"])


async def test_read_timeout_is_the_time_each_attempt_gets(ups: list[FakeUpstream]) -> None:
    silent, good, _ = ups
    silent.behaviour.silent = True
    port = free_port()
    body = f" forward . {silent.address} {good.address} {{\n  policy sequential\n  max_fails 0\n READ }}\n"
    # With 2s (the default) the silent upstream leaves time for the next one within the query's 5s.
    async with in_process(block(port, body.replace("READ", ""))):
        assert await address("a.example.", port) == ("NOERROR", ["192.0.2.2"])
    # An attempt allowed more than the query's whole budget spends it on the silent upstream.
    port = free_port()
    async with in_process(block(port, body.replace("READ", " read_timeout 10s\n"))):
        resp = await aquery("a.example.", "A", port, timeout=8)
        assert dns.rcode.to_text(resp.rcode()) == "SERVFAIL"
        assert good.count() == 1


class _Recorder:
    """A UDP and TCP upstream on 127.0.0.1 that answers NOERROR and records each query's source."""

    def __init__(self) -> None:
        self.sources: list[tuple[str, str]] = []

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        rec = self

        class Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                rec.sources.append(("udp", addr[0]))
                resp = dns.message.make_response(dns.message.from_wire(data))
                self.transport.sendto(resp.to_wire(), addr)  # type: ignore[attr-defined]

        async def tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            rec.sources.append(("tcp", writer.get_extra_info("peername")[0]))
            try:
                while True:
                    n = int.from_bytes(await reader.readexactly(2), "big")
                    resp = dns.message.make_response(dns.message.from_wire(await reader.readexactly(n))).to_wire()
                    writer.write(len(resp).to_bytes(2, "big") + resp)
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()

        self.tcp_server = await asyncio.start_server(tcp, "127.0.0.1", 0)
        port: int = self.tcp_server.sockets[0].getsockname()[1]
        self.udp, _ = await loop.create_datagram_endpoint(Udp, local_addr=("127.0.0.1", port))
        return port

    async def stop(self) -> None:
        self.udp.close()
        self.tcp_server.close()
        await self.tcp_server.wait_closed()


async def test_source_address_is_where_queries_and_probes_leave_from() -> None:
    rec = _Recorder()
    up_port = await rec.start()
    try:
        port = free_port()
        body = f" forward . 127.0.0.1:{up_port} {{\n  source_address 127.0.0.2\n }}\n"
        async with in_process(block(port, body)):
            await aquery("a.example.", "A", port)
            await aquery("a.example.", "A", port, tcp=True)
        assert rec.sources == [("udp", "127.0.0.2"), ("tcp", "127.0.0.2")]
    finally:
        await rec.stop()


async def test_max_age_replaces_a_busy_connection(ups: list[FakeUpstream]) -> None:
    up = ups[0]
    port = free_port()
    # A query every few milliseconds keeps the connection from ever being idle for `expire`:
    # only max_age retires it.
    body = f" forward . {up.address} {{\n  force_tcp\n  expire 2s\n  max_age 2s\n }}\n"
    async with in_process(block(port, body)):
        async def replaced() -> bool:
            await aquery("a.example.", "A", port)
            return up.tcp_connections >= 2

        await until(replaced, "a second connection after max_age", timeout=10)


"""Servers for plugin tests: a Corefile started in the test's loop on a free loopback port, and CoreDNS."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.message
import pytest

from interkube.plugin.handler import Handler
from testkit.fakeupstream import FakeUpstream
from testkit.peers import find_peer, skip_message
from testkit.servers import LOOPBACK, aquery, free_port, in_process


@dataclass
class Running:
    server: Any
    port: int

    def handler(self, plugin: str) -> Handler:
        """The first handler of ``plugin`` in the running chain."""
        return next(h for h in self.server.instance.built.handlers if h.plugin == plugin)

    async def query(self, name: str, rdtype: str = "A", **kwargs: Any) -> dns.message.Message:
        return await aquery(name, rdtype, self.port, **kwargs)

    async def raw(self, wire: bytes) -> bytes:
        """Send query bytes over UDP and return the response bytes as they came."""
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.connect((LOOPBACK, self.port))
            await loop.sock_sendall(sock, wire)
            return await asyncio.wait_for(loop.sock_recv(sock, 65535), 3.0)

    async def from_template(self, plugin: str, name: str, again: str, rdtype: str) -> bytes:
        """Ask ``name``, then ``again`` (the same name in other letters) with the plugin's
        ``build`` taken away: the second answer must come from the template the first one left
        (one in the handler's generation), the first's bytes but for the id and the question in
        the client's letters. Both with EDNS; the second answer is returned."""
        handler: Any = self.handler(plugin)
        first = dns.message.make_query(name, rdtype, use_edns=0)
        first.id = 1111
        resp1 = await self.raw(first.to_wire())
        assert len(handler.generation.templates) == 1

        def no_build(*_: object) -> None:
            raise AssertionError("the second question must not be built again")

        handler.build = no_build
        second = dns.message.make_query(again, rdtype, use_edns=0)
        second.id = 2222
        wire2 = second.to_wire()
        resp2 = await self.raw(wire2)
        qend = len(wire2) - 11  # the question ends where the 11-byte OPT record starts
        assert resp2[:2] == wire2[:2]
        assert resp2[12:qend] == wire2[12:qend]  # the question, in the client's letter case
        assert resp2[2:12] == resp1[2:12] and resp2[qend:] == resp1[qend:]
        return resp2


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[str], Awaitable[Running]]]:
    """``await serve(corefile)`` starts it with PORT replaced by a free port; stopped after."""
    async with contextlib.AsyncExitStack() as stack:
        async def start(corefile: str) -> Running:
            port = free_port()
            server = await stack.enter_async_context(in_process(corefile.replace("PORT", str(port))))
            return Running(server, port)

        yield start


@pytest.fixture
async def example_upstream() -> AsyncIterator[FakeUpstream]:
    """An upstream for `forward . ADDRESS` in `example.` blocks: four addresses for a.example.
    (so that an order shows), three MX records for mx.example., NXDOMAIN for other names."""
    up = await FakeUpstream().start()
    up.behaviour.records = {("a.example.", "A"): ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"],
                            ("mx.example.", "MX"): ["10 a.example.", "20 b.example.", "30 c.example."]}
    yield up
    await up.stop()


@pytest.fixture(scope="module")
def coredns_binary() -> Path:
    """The built CoreDNS peer, for comparisons; the test skips without it."""
    path = find_peer("coredns")
    if path is None:
        pytest.skip(skip_message("coredns"))
    return path

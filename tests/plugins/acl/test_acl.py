"""acl: allow, block (REFUSED with EDE 15), filter (NODATA with EDE 17) and drop (no answer), by
source address and type, through real sockets; and every parse error at its line."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import dns.edns
import dns.message
import dns.rcode
import pytest

from interkube.errors import ConfigError
from interkube.plugins.acl.parse import parse as parse_acl
from testkit.corefile import directive
from testkit.fakeupstream import FakeUpstream

Serve = Callable[[str], Awaitable[Any]]  # the `serve` fixture (tests/plugins/conftest.py)


async def query_from(source: str, name: str, rdtype: str, port: int,
                     timeout: float = 1.0) -> dns.message.Message | None:
    """A UDP query sent from a chosen loopback address; None when nothing comes back."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.setblocking(False)
        q = dns.message.make_query(name, rdtype, use_edns=0)
        await loop.sock_sendto(s, q.to_wire(), ("127.0.0.1", port))
        try:
            data = await asyncio.wait_for(loop.sock_recv(s, 65535), timeout)
        except TimeoutError:
            return None
        return dns.message.from_wire(data)


async def test_acl_allow_block_filter_drop(serve: Serve, example_upstream: FakeUpstream) -> None:
    running = await serve("example.:PORT {\n bind 127.0.0.1\n"
                          " acl {\n  drop net 127.0.0.4\n  filter type AAAA net 127.0.0.3\n"
                          f"  allow net 127.0.0.1 127.0.0.3\n  block\n }}\n forward . {example_upstream.address}\n}}\n")
    port = running.port
    allowed = await query_from("127.0.0.1", "a.example.", "A", port)
    assert allowed is not None and allowed.rcode() == dns.rcode.NOERROR and allowed.answer
    blocked = await query_from("127.0.0.2", "a.example.", "A", port)
    assert blocked is not None and blocked.rcode() == dns.rcode.REFUSED
    assert [o.code for o in blocked.options] == [dns.edns.EDE] and blocked.options[0].code == 15  # type: ignore[attr-defined]
    filtered = await query_from("127.0.0.3", "a.example.", "AAAA", port)
    assert filtered is not None and filtered.rcode() == dns.rcode.NOERROR and not filtered.answer
    assert filtered.options[0].code == 17  # type: ignore[attr-defined]
    other_type = await query_from("127.0.0.3", "a.example.", "A", port)
    assert other_type is not None and other_type.answer
    assert await query_from("127.0.0.4", "a.example.", "A", port, timeout=0.5) is None
    stats = running.handler("acl").stats  # type: ignore[attr-defined]
    assert (stats.allowed, stats.blocked, stats.filtered, stats.dropped) == (2, 1, 1, 1)


@pytest.mark.parametrize(("rule", "message"), [
    ("reject", "unknown action"),
    ("allow 10.0.0.0/8", "expected `type` or `net`"),
    ("allow type BOGUS", "unknown query type"),
    ("allow net 10.0.0.0/33", "invalid network"),
    ("allow net * 10.0.0.0/8", "nothing may follow"),
    ("allow type", "needs at least one query type"),
])
def test_acl_parse_errors(rule: str, message: str) -> None:
    d = directive(f"acl {{\n  {rule}\n }}")
    with pytest.raises(ConfigError, match=message) as info:
        parse_acl(d)
    assert info.value.line == 3

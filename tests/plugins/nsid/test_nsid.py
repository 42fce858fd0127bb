"""nsid: an NSID option in the answers to queries that carry one, whoever answered (an upstream's
own replaced); nothing for the others; the README's example."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import dns.edns
import dns.flags
import dns.message
import pytest

from interkube.dns.wire import parse_query
from interkube.errors import ConfigError
from interkube.plugin.request import Request
from interkube.plugins.nsid.handler import asks_nsid, with_nsid
from interkube.plugins.nsid.parse import NsidConfig, parse
from testkit.corefile import directive
from testkit.fakeupstream import FakeUpstream
from testkit.readme import on_port, readme_examples
from testkit.servers import aquery, free_port, in_process

Running = Any  # tests/plugins/conftest.py's Running
Serve = Callable[[str], Awaitable[Running]]
NSID = dns.edns.OptionType.NSID
OPTION = b"\x00\x03\x00\x02id"


def ask(**kw: Any) -> dns.message.Message:
    return dns.message.make_query("a.example.", "A", **kw)


def request(msg: dns.message.Message) -> Request:
    wire = msg.to_wire()
    q = parse_query(wire)
    assert q is not None
    return Request(wire, q, ("127.0.0.1", 5), "udp")


def nsid_of(msg: dns.message.Message) -> bytes | None:
    found = [o for o in msg.options if o.otype == NSID]
    return found[0].to_wire() if found else None


def test_parse() -> None:
    assert parse(directive("nsid")) == NsidConfig(None)
    assert parse(directive("nsid Use  The Force")) == NsidConfig("Use The Force")
    with pytest.raises(ConfigError, match="Corefile:2: nsid: takes no block"):
        parse(directive("nsid a {\n b\n}"))


def test_which_queries_ask() -> None:
    assert not asks_nsid(request(ask()))
    assert not asks_nsid(request(ask(use_edns=0)))
    cookie = dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"12345678")
    assert not asks_nsid(request(ask(use_edns=0, options=[cookie])))
    assert asks_nsid(request(ask(use_edns=0, options=[cookie, dns.edns.GenericOption(NSID, b"")])))


def test_the_option_is_added_replaced_or_brought_with_an_opt_record() -> None:
    query = ask(use_edns=0, payload=4096, want_dnssec=True, options=[dns.edns.GenericOption(NSID, b"")])
    req = request(query)
    resp = dns.message.make_response(query)
    out = dns.message.from_wire(with_nsid(resp.to_wire(), OPTION, req))
    assert nsid_of(out) == b"id"
    resp.use_edns(0, 0, 1232, options=[dns.edns.GenericOption(NSID, b"upstream"),
                                       dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"12345678")])
    out = dns.message.from_wire(with_nsid(resp.to_wire(), OPTION, req))
    assert nsid_of(out) == b"id" and len(out.options) == 2
    resp.use_edns(False)
    out = dns.message.from_wire(with_nsid(resp.to_wire(), OPTION, req))
    assert nsid_of(out) == b"id" and out.payload == 4096 and out.ednsflags & dns.flags.DO


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    up = await FakeUpstream().start()

    def with_its_own_nsid(q: dns.message.Message) -> dns.message.Message:
        r = dns.message.make_response(q)
        r.use_edns(0, 0, 1232, options=[dns.edns.GenericOption(NSID, b"upstream")])
        return r

    up.behaviour.custom = with_its_own_nsid
    yield up
    await up.stop()


async def test_through_the_server(serve: Serve, upstream: FakeUpstream) -> None:
    running = await serve(f".:PORT {{\n bind 127.0.0.1\n nsid\n hosts {{\n  192.0.2.1 h.example\n  fallthrough\n }}\n"
                          f" forward . {upstream.address}\n}}\n")
    me = socket.gethostname().encode()
    for name in ("h.example.", "H.example.", "f.example."):  # from memory (twice), forwarded
        r = await running.query(name, "A", use_edns=0, options=[dns.edns.GenericOption(NSID, b"")])
        assert nsid_of(r) == me, name
        r = await running.query(name, "A", use_edns=0)
        assert nsid_of(r) is None or name == "f.example."  # (the upstream's own, untouched)


async def test_readme_example() -> None:
    (example,) = readme_examples("nsid")
    port = free_port()
    async with in_process(on_port(example, port)):
        r = await aquery("example.org", "A", port, use_edns=0, options=[dns.edns.GenericOption(NSID, b"")])
        assert nsid_of(r) == b"Use The Force"

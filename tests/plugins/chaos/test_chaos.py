"""chaos: CH TXT answers about the server, everything else passed on; the README's examples."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import pytest

from interkube import __version__
from interkube.errors import ConfigError
from interkube.plugins.chaos.parse import ChaosConfig, parse
from testkit.corefile import directive
from testkit.readme import on_port, readme_examples
from testkit.servers import aquery, free_port, in_process

Running = Any  # tests/plugins/conftest.py's Running
Serve = Callable[[str], Awaitable[Running]]


def texts(msg: dns.message.Message) -> list[str]:
    return [b"".join(rd.strings).decode() for rrset in msg.answer for rd in rrset]


def test_parse_forms() -> None:
    assert parse(directive("chaos")) == ChaosConfig(f"interkube-{__version__}", ("interkube",))
    assert parse(directive("chaos v1")) == ChaosConfig("v1", ("interkube",))
    assert parse(directive("chaos v1 zed amy zed")) == ChaosConfig("v1", ("amy", "zed"))
    assert parse(directive("chaos " + "x" * 300)).version == "x" * 255
    with pytest.raises(ConfigError, match="Corefile:2: chaos: takes no block"):
        parse(directive("chaos v1 {\n a\n}"))


async def test_the_five_names_and_what_passes(serve: Serve) -> None:
    running = await serve(".:PORT {\n bind 127.0.0.1\n chaos v1.2 ann bob cid\n"
                          " hosts {\n  192.0.2.1 version.bind\n }\n}\n")
    for name in ("version.bind", "VERSION.Server."):
        r = await running.query(name, "TXT", rdclass="CH")
        assert texts(r) == ["v1.2"] and r.answer[0].ttl == 0 and r.answer[0].rdclass == 3
        assert r.answer[0].name.to_text() == name.rstrip(".") + "."  # the client's letters
        assert not r.flags & dns.flags.AA
    for name in ("hostname.bind", "id.server"):
        assert texts(await running.query(name, "TXT", rdclass="CH")) == [socket.gethostname()]
    orders = set()
    for _ in range(30):
        r = await running.query("authors.bind", "TXT", rdclass="CH")
        orders.add(tuple(texts(r)))
    assert {tuple(sorted(o)) for o in orders} == {("ann", "bob", "cid")} and len(orders) > 1
    # Other CH names, other types, class IN: the next plugin (hosts answers IN, fails CH).
    assert (await running.query("other.bind", "TXT", rdclass="CH")).rcode() == dns.rcode.SERVFAIL
    r = await running.query("version.bind", "A")
    assert [rd.address for rd in r.answer[0]] == ["192.0.2.1"]
    assert (await running.query("version.bind", "A", rdclass="CH")).rcode() == dns.rcode.SERVFAIL


async def test_default_version_and_authors(serve: Serve) -> None:
    running = await serve(".:PORT {\n bind 127.0.0.1\n chaos\n}\n")
    assert texts(await running.query("version.bind", "TXT", rdclass="CH")) == [f"interkube-{__version__}"]
    assert texts(await running.query("authors.bind", "TXT", rdclass="CH")) == ["interkube"]


@pytest.mark.parametrize("index", [0, 1])
async def test_readme_examples(index: int) -> None:
    examples = readme_examples("chaos")
    assert len(examples) == 2
    port = free_port()
    async with in_process(on_port(examples[index], port)):
        r = await aquery("version.bind", "TXT", port, rdclass="CH")
        assert texts(r) == ["interkube-001"]
        assert texts(await aquery("authors.bind", "TXT", port, rdclass="CH")) == ["dns@example.org"]
        if index == 1:
            r = await aquery("www.example.org", "A", port)
            assert [rd.address for rd in r.answer[0]] == ["192.0.2.10"]

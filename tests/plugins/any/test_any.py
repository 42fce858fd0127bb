"""any: ANY questions get RFC 8482's HINFO, from memory; other types pass; the README example."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import dns.flags
import dns.message
import dns.rdataclass
import dns.rdatatype
import pytest

from interkube.errors import ConfigError
from interkube.plugins.any.parse import parse
from testkit.corefile import directive
from testkit.readme import on_port, readme_examples
from testkit.servers import aquery, free_port, in_process

Running = Any  # tests/plugins/conftest.py's Running
Serve = Callable[[str], Awaitable[Running]]


def hinfo(msg: dns.message.Message) -> str:
    (rrset,) = msg.answer
    return rrset.to_text()


async def test_any_is_answered_with_hinfo_from_memory(serve: Serve) -> None:
    running = await serve(".:PORT {\n bind 127.0.0.1\n any\n whoami\n}\n")
    r = await running.query("Mixed.Example.", "ANY", use_edns=0)
    assert hinfo(r) == 'Mixed.Example. 8482 IN HINFO "ANY obsoleted" "See RFC 8482"'
    assert not r.flags & dns.flags.AA and r.edns == 0 and not r.additional
    # The same question in other letters comes from the template the first one left.
    handler = running.handler("any")
    before = len(handler.templates)
    r = await running.query("mixed.EXAMPLE.", "ANY", use_edns=0)
    assert hinfo(r).startswith("mixed.EXAMPLE. 8482 IN HINFO")
    assert len(handler.templates) == before == 1
    # Any class: the HINFO record is class IN, as CoreDNS writes it.
    r = await running.query("x.example.", "ANY", rdclass="CH")
    assert r.answer[0].rdclass == dns.rdataclass.IN
    # Every other type goes on (whoami answers it).
    r = await running.query("x.example.", "A")
    assert not r.answer and r.additional[0].rdtype == dns.rdatatype.A


def test_parse_refuses_arguments() -> None:
    with pytest.raises(ConfigError, match="Corefile:2: any: expected exactly 0 arguments, got 1"):
        parse(directive("any all"))


async def test_readme_example() -> None:
    (example,) = readme_examples("any")
    port = free_port()
    async with in_process(on_port(example, port)):
        r = await aquery("example.org", "ANY", port)
        assert hinfo(r) == 'example.org. 8482 IN HINFO "ANY obsoleted" "See RFC 8482"'
        r = await aquery("example.org", "A", port)
        assert not r.answer and r.additional[0].to_text() == "example.org. 0 IN A 127.0.0.1"

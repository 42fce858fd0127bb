"""local: localhost names and the loopback reverse zones answered as CoreDNS answers them, never
forwarded; the counter; the README's examples."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import pytest

from interkube.errors import ConfigError
from interkube.plugins.local.parse import LocalConfig, parse
from testkit.corefile import directive
from testkit.fakeupstream import FakeUpstream
from testkit.readme import on_port, readme_examples
from testkit.servers import aquery, free_port, in_process

Running = Any  # tests/plugins/conftest.py's Running
Serve = Callable[[str], Awaitable[Running]]
SOA = "localhost. root.localhost. 1 0 0 0 604800"


def summary(msg: dns.message.Message) -> tuple[str, list[str], list[str]]:
    return (dns.rcode.to_text(msg.rcode()), [rs.to_text() for rs in msg.answer],
            [rs.to_text() for rs in msg.authority])


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    up = await FakeUpstream().start()
    up.behaviour.records = {("localhost.example.org.", "A"): ["192.0.2.99"]}
    yield up
    await up.stop()


CASES = [
    ("localhost.", "A", ("NOERROR", ["localhost. 604800 IN A 127.0.0.1"], [])),
    ("LocalHost.", "AAAA", ("NOERROR", ["LocalHost. 604800 IN AAAA ::1"], [])),
    ("localhost.", "SOA", ("NOERROR", [f"localhost. 604800 IN SOA {SOA}"], [])),
    ("localhost.", "NS", ("NOERROR", ["localhost. 604800 IN NS localhost."], [])),
    ("localhost.", "MX", ("NOERROR", [], [f"localhost. 604800 IN SOA {SOA}"])),
    ("a.b.localhost.", "A", ("NOERROR", ["a.b.localhost. 604800 IN A 127.0.0.1"], [])),
    ("a.localhost.", "TXT", ("NOERROR", [], [f"a.localhost. 604800 IN SOA {SOA}"])),
    ("localhost.example.org.", "AAAA", ("NOERROR", ["localhost.example.org. 604800 IN AAAA ::1"], [])),
    ("127.in-addr.arpa.", "NS", ("NOERROR", ["127.in-addr.arpa. 604800 IN NS localhost."], [])),
    ("0.in-addr.arpa.", "A", ("NOERROR", [], [f"0.in-addr.arpa. 604800 IN SOA {SOA}"])),
    ("255.in-addr.arpa.", "SOA", ("NOERROR", [f"255.in-addr.arpa. 604800 IN SOA {SOA}"], [])),
    ("1.0.0.127.in-addr.arpa.", "PTR", ("NOERROR", ["1.0.0.127.in-addr.arpa. 604800 IN PTR localhost."], [])),
    ("1.0.0.127.in-addr.arpa.", "A", ("NOERROR", [], [f"127.in-addr.arpa. 604800 IN SOA {SOA}"])),
    ("2.0.0.127.IN-ADDR.arpa.", "PTR", ("NXDOMAIN", [], [f"127.IN-ADDR.arpa. 604800 IN SOA {SOA}"])),
    ("1.0.0.0.in-addr.arpa.", "PTR", ("NXDOMAIN", [], [f"0.in-addr.arpa. 604800 IN SOA {SOA}"])),
]


async def test_answers_and_nothing_leaves(serve: Serve, upstream: FakeUpstream) -> None:
    running = await serve(f".:PORT {{\n bind 127.0.0.1\n local\n forward . {upstream.address}\n}}\n")
    for name, rdtype, want in CASES:
        r = await running.query(name, rdtype, use_edns=0)
        assert summary(r) == want, (name, rdtype)
        assert not r.flags & dns.flags.AA and r.edns == 0
    assert upstream.queries == []
    # Names outside go on to the next plugin.
    r = await running.query("www.example.org.", "A")
    assert r.rcode() == dns.rcode.NXDOMAIN and len(upstream.queries) == 1
    # Counted: names under .localhost. and beginning with localhost., not localhost. itself.
    registry = running.server.services.metrics.registry
    assert registry.get_sample_value("interkube_local_localhost_requests_total") == 3


async def test_localhost_prefix_off_forwards_the_legacy_names(serve: Serve, upstream: FakeUpstream) -> None:
    running = await serve(f".:PORT {{\n bind 127.0.0.1\n local {{\n  localhost_prefix off\n }}\n"
                          f" forward . {upstream.address}\n}}\n")
    r = await running.query("localhost.example.org.", "A")
    assert [rd.address for rd in r.answer[0]] == ["192.0.2.99"] and len(upstream.queries) == 1
    r = await running.query("x.localhost.", "A")
    assert [rd.address for rd in r.answer[0]] == ["127.0.0.1"] and len(upstream.queries) == 1


def test_parse() -> None:
    assert parse(directive("local")) == LocalConfig(True)
    assert parse(directive("local {\n localhost_prefix off\n}")) == LocalConfig(False)
    with pytest.raises(ConfigError, match="Corefile:3: local: localhost_prefix expects 'on' or 'off', got 'no'"):
        parse(directive("local {\n localhost_prefix no\n}"))
    with pytest.raises(ConfigError, match="Corefile:3: local: unknown option 'prefix'"):
        parse(directive("local {\n prefix on\n}"))
    with pytest.raises(ConfigError, match="Corefile:2: local: expected exactly 0 arguments, got 1"):
        parse(directive("local all"))


@pytest.mark.parametrize("index", [0, 1])
async def test_readme_examples(index: int, upstream: FakeUpstream) -> None:
    examples = readme_examples("local")
    assert len(examples) == 2
    port = free_port()
    corefile = on_port(examples[index], port).replace("127.0.0.1:5300", upstream.address)
    async with in_process(corefile):
        r = await aquery("localhost", "A", port)
        assert [rd.address for rd in r.answer[0]] == ["127.0.0.1"]
        r = await aquery("1.0.0.127.in-addr.arpa", "PTR", port)
        assert r.answer[0][0].target.to_text() == "localhost."
        assert upstream.queries == []
        r = await aquery("localhost.example.org", "A", port)
        # The legacy form: answered here by default, forwarded with localhost_prefix off.
        assert [rd.address for rd in r.answer[0]] == ["127.0.0.1" if index == 0 else "192.0.2.99"]
        assert len(upstream.queries) == index

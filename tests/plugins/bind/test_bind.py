"""bind: the addresses a server block listens on (addresses, interface names, `except`), what
the listeners make of them on real sockets, and every mistake at its line."""

from __future__ import annotations

import asyncio
import shutil

import dns.rcode
import pytest

from interkube.corefile.parser import parse_text
from interkube.errors import ConfigError
from interkube.pkg.netif import interface_addresses
from interkube.plugin.services import Services
from interkube.plugins.bind.parse import BindConfig, parse
from interkube.server.runtime import build
from testkit.corefile import directive
from testkit.fakeupstream import FakeUpstream
from testkit.servers import aquery, free_port, in_process


def parsed(text: str) -> BindConfig:
    return parse(directive(text))


def test_parse() -> None:
    assert parsed("bind 127.0.0.1 ::1") == BindConfig(("127.0.0.1", "::1"))
    assert parsed("bind lo {\n except ::1\n }") == BindConfig(("lo",), ("::1",))


@pytest.mark.parametrize(("text", "message"), [
    ("bind", "at least 1"),
    ("bind 127.0.0.1 {\n only 127.0.0.1\n }", "unknown option"),
    ("bind 127.0.0.1 {\n except\n }", "at least 1"),
])
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parsed(text)


def listen_keys(corefile: str) -> list[tuple[str, str, int]]:
    return sorted(build(parse_text(corefile), "Corefile", Services()).chains)


def test_addresses_interfaces_and_except() -> None:
    assert listen_keys("example.:5300 {\n bind 127.0.0.1 127.0.0.2 127.0.0.1 {\n  except 127.0.0.2\n }\n}\n") == [
        ("dns", "127.0.0.1", 5300)]
    # Several bind lines add up.
    assert listen_keys("example.:5300 {\n bind 127.0.0.1\n bind 127.0.0.2\n}\n") == [
        ("dns", "127.0.0.1", 5300), ("dns", "127.0.0.2", 5300)]


@pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2's `ip` is not installed")
def test_an_interface_name_means_its_addresses() -> None:
    lo = interface_addresses("lo")
    assert "127.0.0.1" in lo
    assert listen_keys("example.:5300 {\n bind lo\n}\n") == sorted(("dns", a, 5300) for a in lo)
    assert listen_keys("example.:5300 {\n bind lo {\n  except 127.0.0.1\n }\n}\n") == sorted(
        ("dns", a, 5300) for a in lo if a != "127.0.0.1")


@pytest.mark.parametrize(("corefile", "message"), [
    (". {\n bind 127.0.0.1 {\n  except 127.0.0.1\n }\n}\n", r"Corefile:2: bind: no address left to listen on"),
    (". {\n bind no-such-interface0\n}\n", r"Corefile:2: bind: no interface or address 'no-such-interface0'"),
])
def test_setup_errors_name_the_line(corefile: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build(parse_text(corefile), "Corefile", Services())


async def test_a_block_answers_only_on_its_addresses(two_upstreams: tuple[FakeUpstream, FakeUpstream]) -> None:
    """Two blocks for the same zone and port on two addresses are two servers; an address
    neither binds is not listened on at all."""
    a, b = two_upstreams
    port = free_port("127.0.0.2")
    core = (f"example.:{port} {{\n bind 127.0.0.2\n forward . {a.address}\n}}\n"
            f"example.:{port} {{\n bind 127.0.0.3\n forward . {b.address}\n}}\n")
    async with in_process(core):
        first = await aquery("a.example.", "A", port, host="127.0.0.2", tcp=True)
        second = await aquery("a.example.", "A", port, host="127.0.0.3")
        assert [rr.address for rr in first.answer[0]] == ["192.0.2.1"]
        assert [rr.address for rr in second.answer[0]] == ["192.0.2.2"]
        assert first.rcode() == second.rcode() == dns.rcode.NOERROR
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.4", port)

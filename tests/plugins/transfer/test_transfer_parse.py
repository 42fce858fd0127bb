"""The transfer directive: every form CoreDNS 1.15 accepts (its own parse tests' inputs among
them) and every mistake, at file:line; several directives in a block make one handler."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from interkube.errors import ConfigError
from interkube.plugins.transfer.handler import TransferHandler
from interkube.plugins.transfer.parse import Secondary, TransferConfig, parse
from testkit.corefile import directive

#: tests/plugins/conftest.py's serve fixture: starts a Corefile (PORT replaced) in the test's loop.
Serve = Callable[[str], Awaitable[Any]]


def test_coredns_parse_test_inputs() -> None:
    cfg = parse(directive("""transfer example.net example.org {
        to 1.2.3.4 5.6.7.8:1053 [1::2]:34 [fe80::1%eth0]:53
        source 2001:db8::53
    }"""))
    assert cfg == TransferConfig(
        zones=("example.net.", "example.org."),
        to=(Secondary("1.2.3.4", 53), Secondary("5.6.7.8", 1053), Secondary("1::2", 34),
            Secondary("fe80::1%eth0", 53)),
        anyone=False, source=ipaddress.ip_address("2001:db8::53"), where="Corefile:2")
    assert [str(s) for s in cfg.to] == ["1.2.3.4:53", "5.6.7.8:1053", "[1::2]:34", "[fe80::1%eth0]:53"]
    assert cfg.to[3].address == ipaddress.ip_address("fe80::1")  # what a client's address is compared with

    anyone = parse(directive("transfer example.com example.edu {\n to * 1.2.3.4\n}"))
    assert anyone.anyone and anyone.to == (Secondary("1.2.3.4", 53),) and anyone.zones == (
        "example.com.", "example.edu.")

    bare = parse(directive("transfer {\n to 1.2.3.4 5.6.7.8:1053 [1::2]:34\n}"))
    assert bare.zones == () and len(bare.to) == 3  # the server block's zones


def test_to_may_repeat_and_takes_bare_ipv6() -> None:
    cfg = parse(directive("transfer 10.0.0.0/8 {\n to ::1\n to 127.0.0.1:5300 ::1\n}"))
    assert cfg.zones == ("10.in-addr.arpa.",)
    assert cfg.to == (Secondary("::1", 53), Secondary("127.0.0.1", 5300))
    assert not cfg.anyone and cfg.source is None


@pytest.mark.parametrize(("body", "message"), [
    ("transfer example.org {\n}", "Corefile:2: transfer: needs a `to` option"),
    ("transfer", "Corefile:2: transfer: needs a `to` option"),
    ("transfer {\n invalid option\n}", "Corefile:3: transfer: unknown option 'invalid'"),
    ("transfer {\n to\n}", "Corefile:3: to: expected at least 1 argument, got 0"),
    ("transfer {\n to example.com 1.2.3.4\n}", "Corefile:3: transfer: 'example.com' is not an IP address"),
    ("transfer {\n to 1.2.3.4:99999\n}", "Corefile:3: transfer: '1.2.3.4:99999' has an invalid port '99999'"),
    ("transfer {\n to [::1\n}", "Corefile:3: transfer: '[::1' is not an address"),
    ("transfer {\n to 1.2.3.4\n source example.org\n}", "Corefile:4: invalid IP address 'example.org'"),
    ("transfer {\n to 1.2.3.4\n source 192.0.2.53\n source 2001:db8::53\n}",
     "Corefile:5: transfer: source already given (at Corefile:4)"),
    ("transfer {\n to 1.2.3.4\n source\n}", "Corefile:4: source: expected exactly 1 argument, got 0"),
    ("transfer {\n to 1.2.3.4 {\n }\n}", "Corefile:3: to: takes no block of options"),
])
def test_mistakes(body: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(directive(body))
    assert str(err.value).startswith(message)


async def test_several_directives_are_one_handler(serve: Serve) -> None:
    """Each `transfer` line is a stanza of the block's one transfer handler, as in CoreDNS; the
    stanza of the longest zone answers, the first one naming a zone owns it."""
    srv = await serve("""example.org:PORT {
    bind 127.0.0.1
    transfer {
        to 127.0.0.2
    }
    transfer sub.example.org {
        to 127.0.0.3
    }
    transfer sub.example.org {
        to 127.0.0.4
    }
}
""")
    handlers = [h for h in srv.server.instance.built.handlers if h.plugin == "transfer"]
    assert len(handlers) == 1
    handler = handlers[0]
    assert isinstance(handler, TransferHandler)
    assert [s.zones for s in handler.stanzas] == [("example.org.",), ("sub.example.org.",), ("sub.example.org.",)]
    assert handler.stanza_for("a.sub.example.org.") is handler.stanzas[1]
    assert handler.stanza_for("www.example.org.") is handler.stanzas[0]
    assert handler.stanza_for("example.net.") is None

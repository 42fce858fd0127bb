"""Building a parsed Corefile (interkube.server.runtime.build): unknown plugins, zones defined
twice, plugins that may appear once, option errors at their line, the registry's execution
order, and tls:// keys without the tls directive."""

from __future__ import annotations

import pytest

from interkube.corefile.parser import parse_text
from interkube.errors import ConfigError, UnknownPlugin
from interkube.plugin.services import Services
from interkube.server.runtime import build


def test_unknown_plugin_names_file_line() -> None:
    blocks = parse_text(". {\n  errors\n  nosuchplugin arg\n}\n", "My.Corefile")
    with pytest.raises(UnknownPlugin, match=r"^My.Corefile:3: unknown plugin 'nosuchplugin'"):
        build(blocks, "My.Corefile", Services())


def test_same_zone_and_port_twice_is_an_error() -> None:
    blocks = parse_text("example.org:5300 {\n errors\n}\nEXAMPLE.org.:5300 {\n errors\n}\n")
    with pytest.raises(ConfigError, match=r"Corefile:4: zone dns://example.org.:5300 is defined more than once"):
        build(blocks, "Corefile", Services())


def test_same_zone_on_other_ports_or_addresses_is_fine() -> None:
    blocks = parse_text("example.org:5300 {\n errors\n}\nexample.org:5301 {\n errors\n}\n"
                        "example.org:5302 {\n bind 127.0.0.1\n}\nexample.org:5302 {\n bind 127.0.0.2\n}\n")
    built = build(blocks, "Corefile", Services())
    assert sorted(built.chains) == [("dns", "", 5300), ("dns", "", 5301),
                                    ("dns", "127.0.0.1", 5302), ("dns", "127.0.0.2", 5302)]


def test_plugin_that_may_appear_once() -> None:
    blocks = parse_text(". {\n errors\n errors\n}\n")
    with pytest.raises(ConfigError, match=r"Corefile:3: errors: may appear only once"):
        build(blocks, "Corefile", Services())


def test_bad_argument_names_the_option_line() -> None:
    blocks = parse_text(". {\n forward . 127.0.0.1 {\n  policy fastest\n }\n}\n")
    with pytest.raises(ConfigError, match=r"Corefile:3: policy: unknown policy 'fastest'"):
        build(blocks, "Corefile", Services())


def test_execution_order_is_the_registry_order_not_the_file_order() -> None:
    blocks = parse_text(". {\n forward . 127.0.0.1\n log\n errors\n}\n")
    built = build(blocks, "Corefile", Services())
    _, head = built.chains[("dns", "", 53)]["."]
    chain = []
    h = head
    while h.plugin != "chain":
        chain.append(h.plugin)
        h = h.next
    assert chain == ["errors", "log", "forward"]


def test_tls_key_needs_tls_directive() -> None:
    blocks = parse_text("tls://example.org {\n errors\n}\n")
    with pytest.raises(ConfigError, match="needs a `tls"):
        build(blocks, "Corefile", Services())

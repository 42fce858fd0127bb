"""Parsing k8s_external: CoreDNS's options and defaults, mistakes named at their line."""

from __future__ import annotations

import pytest

from interkube.corefile.parser import parse_text
from interkube.errors import ConfigError
from interkube.plugins.k8s_external.parse import ExternalConfig, parse
from interkube.server.runtime import parse_directives


def external(text: str) -> ExternalConfig:
    [block] = parse_text("example.org:53 {\n" + text + "\n}\n", "Corefile")
    return parse(block.directives[0])


def test_coredns_defaults() -> None:
    cfg = external("k8s_external")
    assert (cfg.zones, cfg.apex, cfg.ttl, cfg.headless, cfg.fallthrough.enabled) == ((), "dns", 5, False, False)


def test_every_option() -> None:
    cfg = external("k8s_external example.org 192.0.2.0/24 {\n apex ns\n ttl 0\n headless\n fallthrough example.org\n}")
    assert cfg.zones == ("example.org.", "2.0.192.in-addr.arpa.")
    assert (cfg.apex, cfg.ttl, cfg.headless) == ("ns", 0, True)
    assert cfg.fallthrough.zones == ("example.org.",) and cfg.where == "Corefile:2"


@pytest.mark.parametrize(("body", "message"), [
    ("k8s_external {\n ttl 3601\n}", "Corefile:3: ttl 3601 is above the maximum of 3600"),
    ("k8s_external {\n ttl -1\n}", "Corefile:3: ttl -1 is below the minimum of 0"),
    ("k8s_external {\n ttl\n}", "Corefile:3: ttl: expected exactly 1 argument, got 0"),
    ("k8s_external {\n apex\n}", "Corefile:3: apex: expected exactly 1 argument, got 0"),
    ("k8s_external {\n apex ns.\n}", "Corefile:3: k8s_external: apex 'ns.' is a label under the zone"),
    ("k8s_external {\n headless yes\n}", "Corefile:3: headless: expected exactly 0 arguments, got 1"),
    ("k8s_external {\n resolve\n}", "Corefile:3: k8s_external: unknown option 'resolve'"),
    ("k8s_external {\n ttl 5\n ttl 6\n}", "Corefile:4: k8s_external: option 'ttl' given twice"),
])
def test_mistakes_are_named_at_their_line(body: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        external(body)
    assert str(info.value).startswith(message), str(info.value)


def test_once_per_server_block() -> None:
    [block] = parse_text("example.org {\n kubernetes cluster.local\n k8s_external a.org\n k8s_external b.org\n}\n",
                         "Corefile")
    with pytest.raises(ConfigError) as info:
        parse_directives(block)
    assert str(info.value).startswith("Corefile:4: k8s_external: may appear only once in a server block")


def test_runs_before_kubernetes_as_in_coredns() -> None:
    [block] = parse_text("example.org {\n kubernetes cluster.local\n k8s_external\n}\n", "Corefile")
    assert [plugin.name for _, plugin, _, _ in parse_directives(block)] == ["k8s_external", "kubernetes"]

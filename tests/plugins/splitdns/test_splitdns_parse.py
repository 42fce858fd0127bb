"""Parsing splitdns: its rules and options, and every mistake named at its file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from interkube.corefile.parser import parse_text
from interkube.errors import ConfigError
from interkube.plugin.services import Services
from interkube.plugins.splitdns.parse import HostRule, PodRule, SplitDnsConfig, parse
from interkube.server.runtime import build
from testkit.fakekube import write_snapshot

RULE = r"pod ^db-([0-9]+)\.db\.example\.com\.$ db-{1}.db-headless.shop.svc.cluster.local."


def splitdns(text: str) -> SplitDnsConfig:
    [block] = parse_text("example.com:53 {\n" + text + "\n}\n", "Corefile")
    return parse(block.directives[0])


def test_rules_in_order_and_defaults() -> None:
    cfg = splitdns("splitdns db.example.com {\n " + RULE + "\n host DB-9.db.example.com 192.0.2.9 2001:DB8::9\n}")
    assert cfg.zones == ("db.example.com.",)
    [pod, host] = cfg.rules
    assert isinstance(pod, PodRule) and isinstance(host, HostRule)
    assert pod.template == "db-{1}.db-headless.shop.svc.cluster.local." and pod.where == "Corefile:3"
    assert pod.target("db-12.db.example.com.") == "db-12.db-headless.shop.svc.cluster.local."
    assert pod.target("db-x.db.example.com.") is None
    assert (host.name, host.addresses) == ("db-9.db.example.com.", ("192.0.2.9", "2001:db8::9"))
    assert (cfg.cluster, cfg.ttl, cfg.other_types, cfg.fallthrough.enabled) == (None, 5, "nodata", False)


def test_every_option() -> None:
    cfg = splitdns("splitdns {\n " + RULE + "\n from east\n ttl 30\n other_types next\n fallthrough db.example.com\n}")
    assert (cfg.zones, cfg.cluster, cfg.ttl, cfg.other_types) == ((), "east", 30, "next")
    assert cfg.fallthrough.zones == ("db.example.com.",)


def test_templates_take_the_whole_match_and_a_missing_final_dot() -> None:
    cfg = splitdns(r"splitdns {" "\n pod ^(a)(b)?\\.example\\.com\\.$ {0}{2}x-{1}.pods.cluster.local\n}")
    [rule] = cfg.rules
    assert isinstance(rule, PodRule)
    assert rule.target("a.example.com.") == "a.example.com.x-a.pods.cluster.local."  # {2} took no part: empty


@pytest.mark.parametrize(("body", "message"), [
    ("splitdns {\n pod ^db-(\\d+ db-{1}.cluster.local.\n}", "Corefile:3: splitdns: could not parse regex"),
    ("splitdns {\n pod ^db-(?=x) db.cluster.local.\n}", "Corefile:3: splitdns: could not parse regex"),
    ("splitdns {\n pod ^db-([0-9]+)$ db-{2}.cluster.local.\n}",
     "Corefile:3: splitdns: the template 'db-{2}.cluster.local.' uses group {2}, and the regex '^db-([0-9]+)$' "
     "has 1 group(s)"),
    ("splitdns {\n pod ^db$ db..cluster.local.\n}", "Corefile:3: splitdns: template 'db..cluster.local.' is not a DNS"),
    ("splitdns {\n pod ^db$\n}", "Corefile:3: pod: expected exactly 2 arguments, got 1"),
    ("splitdns {\n host a.example.com\n}", "Corefile:3: host: expected at least 2 arguments, got 1"),
    ("splitdns {\n host a.example.com 192.0.2\n}", "Corefile:3:"),
    ("splitdns {\n " + RULE + "\n ttl 3601\n}", "Corefile:4: ttl 3601 is above the maximum of 3600"),
    ("splitdns {\n " + RULE + "\n other_types servfail\n}",
     "Corefile:4: splitdns: other_types must be one of nodata, next, not 'servfail'"),
    ("splitdns {\n " + RULE + "\n from\n}", "Corefile:4: from: expected exactly 1 argument, got 0"),
    ("splitdns {\n " + RULE + "\n rewrite x\n}", "Corefile:4: splitdns: unknown option 'rewrite'"),
    ("splitdns {\n " + RULE + "\n ttl 5\n ttl 6\n}", "Corefile:5: splitdns: option 'ttl' given twice"),
    ("splitdns", "Corefile:2: splitdns: needs at least one `pod REGEX TEMPLATE` or `host NAME ADDRESS...` rule"),
])
def test_mistakes_are_named_at_their_line(body: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        splitdns(body)
    assert str(info.value).startswith(message), str(info.value)


def built(tmp_path: Path, body: str) -> None:
    snapshot = write_snapshot(tmp_path / "cluster.yaml", [])
    text = f".:53 {{\n  kubernetes cluster.local {{\n    snapshot {snapshot}\n  }}\n{body}}}\n"
    build(parse_text(text, "Corefile"), "Corefile", Services())


def test_from_must_name_a_kubernetes_stanzas_cluster(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        built(tmp_path, "  splitdns example.com {\n    " + RULE + "\n    from west\n  }\n")
    assert str(info.value).startswith("Corefile:7: splitdns: from 'west': no kubernetes stanza of this server "
                                      "block serves that cluster (they serve local;"), str(info.value)
    built(tmp_path, "  splitdns example.com {\n    " + RULE + "\n    from local\n  }\n")


def test_pod_rules_need_a_kubernetes_stanza_and_host_rules_a_zone_of_theirs() -> None:
    with pytest.raises(ConfigError) as info:
        build(parse_text(".:53 {\n  splitdns example.com {\n    " + RULE + "\n  }\n}\n", "Corefile"), "Corefile",
              Services())
    assert str(info.value).startswith("Corefile:2: splitdns: `pod` rules need the cluster's `kubernetes` stanza")
    with pytest.raises(ConfigError) as info:
        build(parse_text(".:53 {\n  splitdns example.com {\n    host a.example.org 192.0.2.1\n  }\n}\n", "Corefile"),
              "Corefile", Services())
    assert str(info.value).startswith("Corefile:2: splitdns: host a.example.org. (at Corefile:3) is outside")
    # Host rules alone need no cluster.
    build(parse_text(".:53 {\n  splitdns example.com {\n    host a.example.com 192.0.2.1\n  }\n}\n", "Corefile"),
          "Corefile", Services())

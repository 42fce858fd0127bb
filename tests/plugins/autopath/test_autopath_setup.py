"""The autopath directive as CoreDNS 1.15 reads it, its search list files, and every mistake
with its file and line, before anything starts."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from interkube.corefile.parser import parse_text
from interkube.errors import ConfigError
from interkube.plugin.searchpath import PodSearchPaths, SearchPath, read_search
from interkube.plugin.services import Services
from interkube.plugins.autopath.parse import AutopathConfig, parse
from interkube.server.runtime import Built, build
from testkit.corefile import directive


def test_a_plugin_or_a_file_comes_last_after_the_zones() -> None:
    assert parse(directive("autopath @kubernetes")) == AutopathConfig(plugin="kubernetes", where="Corefile:2")
    assert parse(directive("autopath Cluster.Local example.org resolv.conf")) == AutopathConfig(
        zones=("cluster.local.", "example.org."), resolv_conf="resolv.conf", where="Corefile:2")


@pytest.mark.parametrize(("body", "words"), [
    ("autopath", "Corefile:2: autopath: no resolv-conf specified"),
    ("autopath cluster.local @", "Corefile:2: autopath: `@` names the plugin"),
    ("autopath @kubernetes {\n}", "Corefile:2: autopath: takes no block"),
    ("autopath bad..zone @kubernetes", "Corefile:2: "),
])
def test_mistakes_are_refused_at_their_line(body: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(directive(body))
    assert str(info.value).startswith(words), str(info.value)


def test_a_resolv_conf_gives_its_last_search_list(tmp_path: Path) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text("nameserver 10.0.0.10\nsearch old.example\n# search commented.example\n"
                    "search Default.svc.Cluster.Local svc.cluster.local. cluster.local\noptions ndots:5\n")
    assert read_search(path) == ("default.svc.cluster.local.", "svc.cluster.local.", "cluster.local.")
    path.write_text("search a.example b.example\ndomain corp.example\n")
    assert read_search(path) == ("corp.example.",)
    path.write_text("nameserver 10.0.0.10\n")
    assert read_search(path) == ()
    path.write_text("search ok.example bad..example\n")
    with pytest.raises(ValueError, match=r"line 1: 'bad\.\.example'"):
        read_search(path)
    assert read_search(path, strict=False) == ("ok.example.",)


def test_a_pods_search_list_is_kubelets_then_the_hosts() -> None:
    paths = PodSearchPaths(("corp.example.",))
    path = paths.get("shop", "cluster.local.")
    assert path.domains == ("shop.svc.cluster.local.", "svc.cluster.local.", "cluster.local.", "corp.example.")
    assert path.wires[-1] == b"\x00" and path.wires[0] == b"\x04shop\x03svc\x07cluster\x05local\x00"
    assert paths.get("shop", "cluster.local.") is path  # (one object per list: what autopath keeps its walks by)
    assert paths.get("shop", ".").domains == ("shop.svc.", "svc.", "corp.example.")
    with pytest.raises(ValueError):
        SearchPath(())


def build_text(text: str) -> Built:
    return build(parse_text(text, "Corefile"), "Corefile", Services())


def handlers(built: Built) -> list[str]:
    return [h.plugin for h in built.handlers]


def test_a_search_list_file_is_read_at_setup(tmp_path: Path) -> None:
    missing = tmp_path / "nope.conf"
    with pytest.raises(ConfigError) as info:
        build_text(f".:53 {{\n    autopath {missing}\n}}\n")
    assert str(info.value).startswith(f"Corefile:2: autopath: failed to read '{missing}'"), str(info.value)
    bad = tmp_path / "bad.conf"
    bad.write_text("search x..example\n")
    with pytest.raises(ConfigError, match=r"^Corefile:2: autopath: .*bad.conf: line 1: 'x..example'"):
        build_text(f".:53 {{\n    autopath {bad}\n}}\n")


def test_a_file_without_a_search_list_leaves_nothing_to_do(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    empty = tmp_path / "resolv.conf"
    empty.write_text("nameserver 10.0.0.10\n")
    with caplog.at_level(logging.WARNING, "interkube.plugin.autopath"):
        built = build_text(f".:53 {{\n    autopath {empty}\n    whoami\n}}\n")
    assert handlers(built) == ["whoami"]
    assert "Corefile:2: autopath: " in caplog.text and "has no search list" in caplog.text


def test_a_plugin_the_block_does_not_have_leaves_nothing_to_do(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "interkube.plugin.autopath"):
        built = build_text(".:53 {\n    autopath @kubernetes\n    whoami\n}\n")
    assert handlers(built) == ["whoami"]
    assert "Corefile:2: autopath @kubernetes: the server block has no kubernetes plugin" in caplog.text


def test_a_plugin_that_gives_no_search_lists_is_refused_at_autopaths_line() -> None:
    with pytest.raises(ConfigError) as info:
        build_text(".:53 {\n    hosts {\n        192.0.2.1 a.example\n    }\n    autopath @hosts\n}\n")
    assert str(info.value) == ("Corefile:5: autopath: hosts gives no search paths "
                               "(kubernetes does, with `pods verified`)")


def test_kubernetes_gives_the_search_lists(tmp_path: Path) -> None:
    snap = tmp_path / "cluster.yaml"
    snap.write_text("apiVersion: v1\nkind: List\nitems: []\n")
    built = build_text(f".:53 {{\n    kubernetes cluster.local {{\n        snapshot {snap}\n        pods verified\n"
                       f"    }}\n    autopath @kubernetes\n}}\n")
    assert handlers(built) == ["autopath", "kubernetes"]  # (CoreDNS's order, whatever the Corefile's)


def test_autopath_is_one_per_block() -> None:
    with pytest.raises(ConfigError, match=r"^Corefile:3: autopath: may appear only once"):
        build_text(".:53 {\n    autopath @kubernetes\n    autopath @kubernetes\n}\n")

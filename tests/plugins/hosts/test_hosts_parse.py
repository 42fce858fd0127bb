"""The hosts directive: every option and every error, with file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from interkube.errors import ConfigError
from interkube.pkg import fallthrough as fall
from interkube.plugins.hosts.parse import HostsConfig, parse
from interkube.server.main import CorefileSource, Server
from testkit.corefile import directive


def error(body: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(directive(body))
    return str(info.value)


def test_defaults() -> None:
    assert parse(directive("hosts")) == HostsConfig(
        path="/etc/hosts", zones=(), inline=(), ttl=3600, reverse=True, reload=5.0,
        fallthrough=fall.NEVER, fallthrough_unsupported=False)


def test_file_and_zones_normalized() -> None:
    cfg = parse(directive("hosts my.hosts Example.ORG example.net. 10.0.0.0/8"))
    assert cfg.path == "my.hosts"
    assert cfg.zones == ("example.org.", "example.net.", "10.in-addr.arpa.")


def test_inline_entries_and_options() -> None:
    cfg = parse(directive("""hosts h {
        192.0.2.1 a.example.org b.example.org
        2001:db8::1 c.example.org
        ttl 60
        no_reverse
        reload 100ms
        fallthrough example.org
    }"""))
    assert cfg.inline == ("192.0.2.1 a.example.org b.example.org", "2001:db8::1 c.example.org")
    assert (cfg.ttl, cfg.reverse, cfg.reload) == (60, False, 0.1)
    assert cfg.fallthrough == fall.Fallthrough(zones=("example.org.",), enabled=True)


def test_fallthrough_unsupported_in_either_order() -> None:
    for body in ("fallthrough\n fallthrough_unsupported", "fallthrough_unsupported\n fallthrough"):
        cfg = parse(directive(f"hosts h {{\n {body}\n }}"))
        assert cfg.fallthrough_unsupported and cfg.fallthrough.enabled
    assert not parse(directive("hosts h {\n fallthrough\n }")).fallthrough_unsupported


def test_fallthrough_without_zones_and_reload_zero() -> None:
    cfg = parse(directive("hosts h {\n fallthrough\n reload 0\n }"))
    assert cfg.fallthrough == fall.Fallthrough(zones=(), enabled=True)
    assert cfg.reload == 0.0


@pytest.mark.parametrize("body, line, words", [
    ("hosts h {\n ttl\n }", 3, "ttl: expected exactly 1 argument, got 0"),
    ("hosts h {\n ttl 1 2\n }", 3, "ttl: expected exactly 1 argument, got 2"),
    ("hosts h {\n ttl soon\n }", 3, "invalid ttl 'soon'"),
    ("hosts h {\n ttl 0\n }", 3, "ttl 0 is below the minimum of 1"),
    ("hosts h {\n ttl 65536\n }", 3, "ttl 65536 is above the maximum of 65535"),
    ("hosts h {\n no_reverse yes\n }", 3, "no_reverse: expected exactly 0 arguments, got 1"),
    ("hosts h {\n reload\n }", 3, "reload: expected exactly 1 argument, got 0"),
    ("hosts h {\n reload often\n }", 3, "invalid duration 'often'"),
    ("hosts h {\n fallthrough not..a.zone\n }", 3, "not a valid domain name"),
    ("hosts h {\n\n tll 5\n }", 4, "hosts: unknown option 'tll'"),
    ("hosts h {\n ttl 5\n fallthrough_unsupported\n }", 4, "fallthrough_unsupported: requires fallthrough"),
    ("hosts h {\n fallthrough\n fallthrough_unsupported x\n }", 4,
     "fallthrough_unsupported: expected exactly 0 arguments, got 1"),
    ("hosts h {\n 192.0.2.1\n }", 3, "inline entry '192.0.2.1' has no host name"),
    ("hosts h {\n 192.0.2.1 ok.example.org bad..name\n }", 3, "invalid host name 'bad..name'"),
    ("hosts h {\n ttl 5 {\n }\n }", 3, "takes no block of options"),
    ("hosts h bad..zone", 2, "not a valid domain name"),
    ("hosts h 10.0.0.0/99", 2, "invalid reverse zone"),
])
def test_errors_name_file_and_line(body: str, line: int, words: str) -> None:
    message = error(body)
    assert message.startswith(f"Corefile:{line}: ")
    assert words in message


def test_once_per_server_block(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("")
    corefile = tmp_path / "Corefile"
    corefile.write_text(f".:53 {{\n  hosts {hosts}\n  hosts {hosts}\n}}\n")
    with pytest.raises(ConfigError, match=r"Corefile:3: hosts: may appear only once"):
        Server(CorefileSource(str(corefile))).build()


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    corefile = tmp_path / "Corefile"
    corefile.write_text(f".:53 {{\n  hosts {tmp_path}\n}}\n")  # a directory
    with pytest.raises(ConfigError) as info:
        Server(CorefileSource(str(corefile))).build()
    assert str(info.value).startswith(f"{corefile}:2: hosts: cannot read hosts file {tmp_path}")


def test_relative_path_is_relative_to_the_working_directory(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "rel.hosts").write_text("192.0.2.1 a.example.org\n")
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    corefile = conf_dir / "Corefile"
    corefile.write_text("example.org:53 {\n  hosts rel.hosts\n}\n")
    monkeypatch.chdir(tmp_path)
    built = Server(CorefileSource(str(corefile))).build()
    (handler,) = built.handlers
    assert handler.watched.path == str(tmp_path / "rel.hosts")  # type: ignore[attr-defined]

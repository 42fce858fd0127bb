"""The file directive and zone loading: every option and every error, with file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from interkube.errors import ConfigError
from interkube.pkg import fallthrough as fall
from interkube.plugins.file.parse import FileConfig, parse
from interkube.server.main import CorefileSource, Server
from testkit.corefile import directive

SOA = "@ IN SOA ns1.example.org. hostmaster.example.org. 1 7200 3600 86400 300\n"


def test_defaults() -> None:
    assert parse(directive("file db.example.org")) == FileConfig(
        path="db.example.org", zones=(), reload=60.0, fallthrough=fall.NEVER)


def test_zones_and_options() -> None:
    cfg = parse(directive("""file db Example.ORG example.net. 192.0.2.0/24 {
        reload 100ms
        fallthrough example.org
    }"""))
    assert cfg.zones == ("example.org.", "example.net.", "2.0.192.in-addr.arpa.")
    assert cfg.reload == 0.1
    assert cfg.fallthrough == fall.Fallthrough(zones=("example.org.",), enabled=True)


def test_reload_zero_and_fallthrough_everywhere() -> None:
    cfg = parse(directive("file db {\n reload 0\n fallthrough\n }"))
    assert (cfg.reload, cfg.fallthrough) == (0.0, fall.Fallthrough(zones=(), enabled=True))


@pytest.mark.parametrize("body, line, words", [
    ("file", 2, "file: expected at least 1 argument, got 0"),
    ("file db bad..zone", 2, "not a valid domain name"),
    ("file db {\n reload\n }", 3, "reload: expected exactly 1 argument, got 0"),
    ("file db {\n reload 1s 2s\n }", 3, "reload: expected exactly 1 argument, got 2"),
    ("file db {\n reload soon\n }", 3, "invalid duration 'soon'"),
    ("file db {\n fallthrough bad..zone\n }", 3, "not a valid domain name"),
    ("file db {\n\n upstream 127.0.0.1\n }", 4, "file: unknown option 'upstream'"),
    ("file db {\n reload 1s {\n }\n }", 3, "takes no block of options"),
])
def test_errors_name_file_and_line(body: str, line: int, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(directive(body))
    assert str(info.value).startswith(f"Corefile:{line}: ")
    assert words in str(info.value)


def build(tmp_path: Path, body: str) -> str:
    """Build `example.org:53 { BODY }` (BODY on line 2) and return the error it raises."""
    corefile = tmp_path / "Corefile"
    corefile.write_text("example.org:53 {\n" + body + "\n}\n")
    with pytest.raises(ConfigError) as info:
        Server(CorefileSource(str(corefile))).build()
    message = str(info.value)
    assert message.startswith(f"{corefile}:2: file: ")
    return message


def test_missing_zone_file(tmp_path: Path) -> None:
    message = build(tmp_path, f"file {tmp_path / 'absent.db'}")
    assert f"cannot read zone file {tmp_path / 'absent.db'}" in message


def test_syntax_error_names_the_zone_file_line(tmp_path: Path) -> None:
    db = tmp_path / "db.example.org"
    db.write_text("$TTL 300\n" + SOA + "@ IN NS ns1\nns1 IN A 192.0.2.1\nwww IN BOGUS 1.2.3.4\n")
    message = build(tmp_path, f"file {db}")
    assert f"zone example.org.: {db}:5: unknown rdatatype 'BOGUS'" in message


def test_zone_without_soa(tmp_path: Path) -> None:
    db = tmp_path / "db"
    db.write_text("$TTL 300\nwww IN A 192.0.2.1\n")
    assert "no SOA record for origin example.org." in build(tmp_path, f"file {db}")


def test_cname_beside_other_data(tmp_path: Path) -> None:
    db = tmp_path / "db"
    db.write_text("$TTL 300\n" + SOA + "www IN CNAME other\nwww IN A 192.0.2.1\n")
    message = build(tmp_path, f"file {db}")
    assert f"{db}: " in message and "CNAME" in message


def test_not_utf8(tmp_path: Path) -> None:
    db = tmp_path / "db"
    db.write_bytes(b"$TTL 300\n" + SOA.encode() + b'www IN TXT "\xff"\n')
    assert f"{db}:3: not UTF-8 text" in build(tmp_path, f"file {db}")


def test_each_zone_is_read_with_its_own_origin(tmp_path: Path) -> None:
    db = tmp_path / "db"
    db.write_text("$TTL 300\n" + SOA.replace("example.org.", "@") + "www IN A 192.0.2.1\n")
    corefile = tmp_path / "Corefile"
    corefile.write_text(f".:53 {{\n  file {db} example.org example.net\n}}\n")
    (handler,) = Server(CorefileSource(str(corefile))).build().handlers
    assert sorted(handler.data) == ["example.net.", "example.org."]  # type: ignore[attr-defined]
    assert str(handler.data["example.net."].origin) == "example.net."  # type: ignore[attr-defined]

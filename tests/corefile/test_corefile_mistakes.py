"""Corefile mistakes that used to be reported without a line or as something else: bytes that are
not UTF-8 (named at the line of the first bad byte), a server key whose port is not a number
(an invalid port, not an invalid domain name), and an import glob that matches nothing (allowed,
as in CoreDNS, but warned about in CoreDNS's words with file:line)."""

from __future__ import annotations

import logging
from pathlib import Path

import dns.rcode
import pytest

from interkube.corefile.keys import parse_key
from interkube.corefile.lexer import Token
from interkube.corefile.parser import parse_file, parse_text
from interkube.errors import ConfigError
from interkube.plugin.services import Services
from interkube.server.runtime import build
from testkit.servers import free_port, interkube_process, process_output, query
from testkit.waiting import wait_until

# --- bytes that are not UTF-8 -----------------------------------------------------------------


def test_non_utf8_corefile_names_the_line_of_the_first_bad_byte(tmp_path: Path) -> None:
    core = tmp_path / "Corefile"
    # Latin-1 "é" (0xe9) on line 3, after valid UTF-8 ("ü") on line 2.
    core.write_bytes(b". {\n  # f\xc3\xbcr\n  hosts caf\xe9.hosts\n}\n")
    with pytest.raises(ConfigError) as info:
        parse_file(str(core))
    assert (info.value.file, info.value.line) == (str(core), 3)
    assert str(info.value) == f"{core}:3: not UTF-8 text: invalid continuation byte (0xe9)"


def test_non_utf8_imported_file_names_its_own_line(tmp_path: Path) -> None:
    (tmp_path / "plugins.inc").write_bytes(b"errors\n\n\xff log\n")
    core = tmp_path / "Corefile"
    core.write_text(". {\n  import plugins.inc\n}\n")
    with pytest.raises(ConfigError) as info:
        parse_file(str(core))
    assert (info.value.file, info.value.line) == (str(tmp_path / "plugins.inc"), 3)
    assert "invalid start byte (0xff)" in str(info.value)


def test_truncated_multibyte_character_at_the_end_names_the_last_line(tmp_path: Path) -> None:
    core = tmp_path / "Corefile"
    core.write_bytes(b". {\n  errors\n}\n# \xe2\x82")  # the first two bytes of a three-byte "€"
    with pytest.raises(ConfigError) as info:
        parse_file(str(core))
    assert info.value.line == 4
    assert "unexpected end of data (0xe2 0x82)" in str(info.value)


# --- server keys with a port that is not a number -----------------------------------------------


@pytest.mark.parametrize("key", [".:53x", "example.org:53x", "dns://example.org:x53", "tls://.:8S3",
                                 "10.0.0.0/8:5353a", "fd00::/64:port"])
def test_a_port_that_is_not_a_number_is_an_invalid_port(key: str) -> None:
    port = key.rpartition(":")[2]
    with pytest.raises(ConfigError) as info:
        parse_key(Token(key, "Corefile", 7))
    assert str(info.value) == f"Corefile:7: invalid port {port!r} in server key {key!r}"


def test_invalid_port_in_a_corefile_names_its_block_line() -> None:
    blocks = parse_text("example.org:5300 {\n  errors\n}\n\n.:53x {\n  errors\n}\n")
    with pytest.raises(ConfigError, match=r"^Corefile:5: invalid port '53x' in server key '\.:53x'$"):
        build(blocks, "Corefile", Services())


@pytest.mark.parametrize(("key", "zone", "port"), [
    ("fd00::/64", "0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", 53),  # the colons of a v6 CIDR
    ("fd00::/64:5353", "0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", 5353),
    (".:5300", ".", 5300),
])
def test_colons_that_are_not_a_port_still_parse(key: str, zone: str, port: int) -> None:
    [za] = parse_key(Token(key, "Corefile", 1))
    assert (za.zone, za.port) == (zone, port)


# --- import globs that match nothing -------------------------------------------------------------


def test_import_glob_matching_nothing_warns_with_file_line(tmp_path: Path,
                                                           interkube_caplog: pytest.LogCaptureFixture) -> None:
    core = tmp_path / "Corefile"
    core.write_text(". {\n  errors\n  import none-*.inc\n}\n")
    blocks = parse_file(str(core))
    assert [d.name for d in blocks[0].directives] == ["errors"]  # still allowed, as in CoreDNS
    warnings = [(r.levelno, r.name, r.getMessage()) for r in interkube_caplog.records]
    assert warnings == [(logging.WARNING, "interkube.corefile",
                         f"{core}:3: No files matching import glob pattern: none-*.inc")]


def test_import_glob_that_matches_or_a_quiet_parse_does_not_warn(
        tmp_path: Path, interkube_caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "some-1.inc").write_text("log\n")
    core = tmp_path / "Corefile"
    core.write_text(". {\n  import some-*.inc\n}\n")
    assert [d.name for d in parse_file(str(core))[0].directives] == ["log"]
    core.write_text(". {\n  import none-*.inc\n}\n")
    parse_file(str(core), warn=False)       # the reload check's digest: parsed every few seconds
    parse_text(core.read_text(), str(core), warn=False)
    assert interkube_caplog.records == []


def udp_sockets_on(port: int) -> int:
    """How many UDP sockets are bound to 127.0.0.1:``port`` (each worker binds its own)."""
    with open("/proc/net/udp") as f:
        return sum(1 for line in f if line.split()[1:2] == [f"0100007F:{port:04X}"])


def test_serve_prints_the_import_warning_once_with_two_workers(tmp_path: Path) -> None:
    port = free_port()
    core = tmp_path / "Corefile"
    core.write_text(f".:{port} {{\n    bind 127.0.0.1\n    import none-*.inc\n    errors\n}}\n")
    with interkube_process(core, port, args=("--workers", "2")) as proc:
        assert query("x.", "A", port).rcode() == dns.rcode.SERVFAIL  # started: the glob is allowed
        wait_until(lambda: udp_sockets_on(port) == 2, "both workers built and bound")
        out = process_output(proc)
    # The parent checks the configuration before the workers start; they do not say it again.
    assert out.count("No files matching import glob pattern") == 1, out
    assert f"[WARNING] {core}:3: No files matching import glob pattern: none-*.inc\n" in out

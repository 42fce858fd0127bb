"""Corefile lexer, parser and server keys: every rule, and every error naming file:line.

What the runtime makes of a parsed Corefile (build) is in tests/server/test_runtime.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from interkube.corefile.keys import ZoneAddr, parse_key
from interkube.corefile.lexer import Token, tokenize
from interkube.corefile.parser import MAX_IMPORT_DEPTH, parse_file, parse_text
from interkube.errors import ConfigError


def tok(text: str) -> Token:
    return Token(text, "Corefile", 1)


def names(d) -> list[str]:  # type: ignore[no-untyped-def]
    return [a.text for a in d.args]


# --- lexer -------------------------------------------------------------------------------------


def test_tokens_carry_lines_and_comments_are_skipped() -> None:
    toks = tokenize("a b # comment { }\n  c\n\nd", "F")
    assert [(t.text, t.line) for t in toks] == [("a", 1), ("b", 1), ("c", 2), ("d", 4)]


def test_hash_inside_a_word_is_not_a_comment() -> None:
    assert [t.text for t in tokenize("a#b c", "F")] == ["a#b", "c"]


def test_quoted_tokens_keep_spaces_newlines_and_escaped_quotes() -> None:
    toks = tokenize('x "a b" "say \\"hi\\"" "two\nlines" y', "F")
    assert [t.text for t in toks] == ["x", "a b", 'say "hi"', "two\nlines", "y"]
    assert toks[3].quoted and toks[4].line == 2


def test_unterminated_quote_names_its_line() -> None:
    with pytest.raises(ConfigError, match=r"^F:2: unterminated quoted string"):
        tokenize('a\n"open\n', "F")


# --- server blocks and directives --------------------------------------------------------------


def test_forwarded_dns_corefile() -> None:
    blocks = parse_text(
        "remote.svc.cluster.local:5353 {\n    forward . 10.32.3.2\n}\n.:5353 {\n    forward . 10.39.240.10\n}\n"
    )
    assert [[k.text for k in b.keys] for b in blocks] == [["remote.svc.cluster.local:5353"], [".:5353"]]
    assert [(d.name, names(d), d.where) for d in blocks[0].directives] == [
        ("forward", [".", "10.32.3.2"], "Corefile:2")]


def test_keys_separated_by_spaces_and_commas_and_continued_by_comma() -> None:
    blocks = parse_text("a.org b.org, c.org,\n  d.org {\n  errors\n}\n")
    assert [k.text for k in blocks[0].keys] == ["a.org", "b.org", "c.org", "d.org"]


def test_nested_option_blocks() -> None:
    blocks = parse_text(". {\n forward . 127.0.0.1 {\n  health_check 1s no_rec\n  x {\n   y z\n  }\n }\n}\n")
    fwd = blocks[0].directives[0]
    assert fwd.has_block
    assert [(o.name, names(o)) for o in fwd.block] == [("health_check", ["1s", "no_rec"]), ("x", [])]
    assert [(o.name, names(o)) for o in fwd.block[1].block] == [("y", ["z"])]


def test_block_on_one_line() -> None:
    blocks = parse_text(". {\n hosts { fallthrough }\n log\n}\n")
    hosts = blocks[0].directives[0]
    assert [o.name for o in hosts.block] == ["fallthrough"]
    assert [d.name for d in blocks[0].directives] == ["hosts", "log"]


def test_single_block_without_braces() -> None:
    blocks = parse_text(".:5353\nerrors\nlog\n")
    assert [d.name for d in blocks[0].directives] == ["errors", "log"]


@pytest.mark.parametrize(("text", "line", "message"), [
    (". {\n errors\n", 1, "never closed"),
    (". {\n forward . 1.2.3.4 {\n  force_tcp\n}\n", 1, "never closed"),
    (". {\n}\n}\n", 3, "no block is open"),
    ("a.org {\n}\nb.org\nerrors\n", 3, "expected '{'"),
    ("{\n}\n", 1, "expected server keys"),
    (". {\n errors\n {\n }\n}\n", 3, "unexpected '{'"),
])
def test_brace_errors_name_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_text(text, "Corefile")
    assert info.value.file == "Corefile" and info.value.line == line
    assert message in str(info.value)


def test_empty_corefile_is_an_error() -> None:
    with pytest.raises(ConfigError, match="empty"):
        parse_text("# only a comment\n")


# --- environment -------------------------------------------------------------------------------


def test_env_substitution_inside_tokens() -> None:
    blocks = parse_text(".:{$PORT} {\n forward . {$UP}:{%P2%} {$MISSING:fallback}\n}\n",
                        env={"PORT": "5353", "UP": "127.0.0.1", "P2": "5300"})
    assert blocks[0].keys[0].text == ".:5353"
    assert names(blocks[0].directives[0]) == [".", "127.0.0.1:5300", "fallback"]


def test_missing_env_var_becomes_empty() -> None:
    blocks = parse_text(". {\n log x{$NOPE}y\n}\n", env={})
    assert names(blocks[0].directives[0]) == ["xy"]


# --- snippets and imports ----------------------------------------------------------------------


def test_snippet_import_keeps_its_own_lines() -> None:
    text = ("(common) {\n  errors\n  log\n}\n"
            "a.org {\n  import common\n}\nb.org {\n  import common\n  forward . 127.0.0.1\n}\n")
    blocks = parse_text(text)
    assert [d.name for d in blocks[0].directives] == ["errors", "log"]
    assert [d.name for d in blocks[1].directives] == ["errors", "log", "forward"]
    assert blocks[1].directives[0].where == "Corefile:2"


def test_import_files_and_globs(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "a.conf").write_text("a.org {\n  errors\n}\n")
    (tmp_path / "conf.d" / "b.conf").write_text("b.org {\n  log\n}\n")
    (tmp_path / "plugins.inc").write_text("errors\nlog\n")
    core = tmp_path / "Corefile"
    core.write_text("import conf.d/*.conf\nimport nothing/*.conf\nc.org {\n  import plugins.inc\n}\n")
    blocks = parse_file(str(core))
    assert [b.keys[0].text for b in blocks] == ["a.org", "b.org", "c.org"]
    assert blocks[0].directives[0].where == f"{tmp_path / 'conf.d' / 'a.conf'}:2"
    assert [d.name for d in blocks[2].directives] == ["errors", "log"]


def test_import_of_a_missing_file_names_the_import_line(tmp_path: Path) -> None:
    core = tmp_path / "Corefile"
    core.write_text(". {\n  errors\n  import missing.conf\n}\n")
    with pytest.raises(ConfigError) as info:
        parse_file(str(core))
    assert info.value.line == 3 and info.value.file == str(core)
    assert "missing.conf" in str(info.value)


def test_import_cycle_is_caught(tmp_path: Path) -> None:
    (tmp_path / "a.conf").write_text("import b.conf\n")
    (tmp_path / "b.conf").write_text("import a.conf\n")
    core = tmp_path / "Corefile"
    core.write_text("import a.conf\n")
    with pytest.raises(ConfigError, match="cycle"):
        parse_file(str(core))


def test_import_depth_is_limited(tmp_path: Path) -> None:
    for i in range(MAX_IMPORT_DEPTH + 2):
        (tmp_path / f"f{i}.conf").write_text(f"import f{i + 1}.conf\n")
    (tmp_path / f"f{MAX_IMPORT_DEPTH + 2}.conf").write_text(". {\n errors\n}\n")
    core = tmp_path / "Corefile"
    core.write_text("import f0.conf\n")
    with pytest.raises(ConfigError, match="nested more than"):
        parse_file(str(core))


def test_snippet_importing_itself() -> None:
    with pytest.raises(ConfigError, match="imports itself"):
        parse_text("(s) {\n import s\n}\n. {\n import s\n}\n")


def test_import_needs_one_argument() -> None:
    with pytest.raises(ConfigError, match=r"Corefile:2: import: expected exactly one"):
        parse_text(". {\n import\n}\n")


# --- server keys -------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "expected"), [
    (".", [ZoneAddr("dns", ".", 53)]),
    ("Example.ORG", [ZoneAddr("dns", "example.org.", 53)]),
    ("dns://example.org:1053", [ZoneAddr("dns", "example.org.", 1053)]),
    ("tls://example.org", [ZoneAddr("tls", "example.org.", 853)]),
    ("10.0.0.0/24", [ZoneAddr("dns", "0.0.10.in-addr.arpa.", 53)]),
    ("10.0.0.0/8:5353", [ZoneAddr("dns", "10.in-addr.arpa.", 5353)]),
    ("fd00::/64", [ZoneAddr("dns", "0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", 53)]),
])
def test_server_keys(key: str, expected: list[ZoneAddr]) -> None:
    assert parse_key(tok(key)) == expected


def test_cidr_off_a_label_boundary_splits_into_zones() -> None:
    zones = [z.zone for z in parse_key(tok("10.0.0.0/22"))]
    assert zones == [f"{i}.0.10.in-addr.arpa." for i in range(4)]
    assert len(parse_key(tok("fd00::/62"))) == 4


def test_dns_port_flag_sets_the_default_port() -> None:
    assert parse_key(tok("example.org"), dns_port=1053) == [ZoneAddr("dns", "example.org.", 1053)]
    assert parse_key(tok("tls://example.org"), dns_port=1053) == [ZoneAddr("tls", "example.org.", 853)]


@pytest.mark.parametrize(("key", "message"), [
    ("quic://example.org", "not supported"),
    ("foo://example.org", "unknown transport"),
    ("example.org:", "expected a port"),
    ("example.org:70000", "out of range"),
    ("300.0.0.0/8", "invalid reverse zone"),
    ("a..b", "not a valid domain name"),
])
def test_bad_server_keys(key: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_key(tok(key))

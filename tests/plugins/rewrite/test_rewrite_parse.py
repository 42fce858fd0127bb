"""The rewrite directive, read as CoreDNS 1.15 reads it: every field, the block form, and every
mistake with its file and line."""

from __future__ import annotations

import pytest

from interkube.corefile.parser import parse_text
from interkube.errors import ConfigError
from interkube.plugin.services import Services
from interkube.plugins.rewrite.parse import (
    AnswerRule,
    ClassRule,
    CnameRule,
    EdnsRule,
    NameRule,
    Part,
    RcodeRule,
    TtlRule,
    TypeRule,
    parse,
    rcode_value,
    ttl_range,
)
from interkube.plugins.rewrite.patterns import Matcher
from interkube.server.runtime import build
from testkit.corefile import directive


def rule(body: str) -> object:
    return parse(directive(body)).rule


def error(body: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(directive(body))
    return str(info.value)


# --- name ------------------------------------------------------------------------------------


def test_two_names_are_an_exact_rule_normalised_with_answers_always_rewritten() -> None:
    r = rule("rewrite name Foo.Example.COM foo.default.svc.cluster.local")
    assert r == NameRule("stop", "exact", "foo.example.com.", "foo.default.svc.cluster.local.", auto=True)


@pytest.mark.parametrize(("match", "source", "target"), [
    ("prefix", "foo.", "bar."),      # CoreDNS makes every non-regex name fully qualified
    ("suffix", ".schmoogle.com.", ".google.com."),
    ("substring", "service.us-west-1.example.org.", "service.us-west-1.consul."),
])
def test_string_match_types(match: str, source: str, target: str) -> None:
    written = {"prefix": "foo bar", "suffix": ".schmoogle.com. .google.com.",
               "substring": "service.us-west-1.example.org service.us-west-1.consul"}[match]
    r = rule(f"rewrite continue name {match.upper()} {written}")
    assert r == NameRule("continue", match, source, target)


def test_regex_keeps_its_pattern_and_normalises_the_replacement() -> None:
    r = rule(r"rewrite name regex (.*)-(us-west-1)\.Example\.org {1}.Service.{2}.consul answer auto")
    assert isinstance(r, NameRule) and r.pattern is not None
    assert (r.match, r.source, r.target, r.auto) == ("regex", r"(.*)-(us-west-1)\.Example\.org",
                                                     "{1}.service.{2}.consul.", True)


def test_answer_options_repeat_with_or_without_the_keyword() -> None:
    r = rule(r"rewrite name regex (.*)\.a\.org {1}.b.org answer name (.*)\.b\.org {1}.a.org value (.*)\.b\.org "
             r"{1}.a.org answer value x y")
    assert isinstance(r, NameRule)
    assert [(a.field, a.pattern.pattern, a.replacement) for a in r.answers] == [
        ("name", r"(.*)\.b\.org", "{1}.a.org."), ("value", r"(.*)\.b\.org", "{1}.a.org."), ("value", "x", "y.")]
    assert isinstance(r.answers[0], AnswerRule)


def test_block_form_is_one_rule() -> None:
    r = rule("rewrite stop {\n name regex (.*)-(us-west-1)\\.x\\.org {1}.service.{2}.consul\n"
             " answer name (.*)\\.service\\.(us-west-1)\\.consul {1}-{2}.x.org\n}")
    assert isinstance(r, NameRule) and r.mode == "stop" and len(r.answers) == 1
    assert isinstance(rule("rewrite {\n ttl x.org 30\n}"), TtlRule)


def test_metadata_replacement() -> None:
    r = rule(r"rewrite name regex ^([^.]+)\.example\.$ {1}.{kubernetes/client-namespace}.svc.cluster.local metadata "
             "answer auto")
    assert isinstance(r, NameRule) and r.auto
    assert r.parts == (Part(group=1), Part(literal="."), Part(label="kubernetes/client-namespace"),
                       Part(literal=".svc.cluster.local."))


@pytest.mark.parametrize(("body", "message"), [
    ("rewrite name foo", "too few arguments for a name rule"),
    ("rewrite name exact a b c", "invalid arguments for exact rule"),
    ("rewrite name exact a b c d", "'c' is not `answer`"),
    ("rewrite name nope a b", "supports only exact, prefix, suffix, substring and regex"),
    ("rewrite name regex (a b", "invalid regex pattern"),
    ("rewrite name regex a {1}", "uses more groups than the pattern"),
    ("rewrite name regex (a) b answer", "invalid arguments for regex rule"),
    ("rewrite name regex (a) b answer bogus x", "invalid type 'bogus' for answer rule"),
    ("rewrite name regex (a) b answer name (x", "2 arguments required"),
    ("rewrite name regex (a) b answer auto answer name x y", "cannot be combined"),
    ("rewrite name regex (a) b answer name (x) {1}.{2}", "uses more groups"),  # (CoreDNS counts references)
    ("rewrite name prefix a b metadata", "metadata is only supported for regex"),
    ("rewrite name regex (a) {2}.{x/y} metadata", "capture group 2 does not exist"),
    ("rewrite name regex (a) {nolabel} metadata", "invalid metadata label 'nolabel'"),
    ("rewrite name regex (a) a}b metadata", "unmatched closing brace"),
    ("rewrite name regex (a) {1 metadata", "unclosed placeholder"),
    ("rewrite name regex " + "a" * 10_001 + " b", "regex pattern too long"),
    ("rewrite name regex (?=x)y z", "look-around"),
    ("rewrite name regex \\pL z", "Unicode classes"),
    ("rewrite name regex (a)\\1 z", "back-reference"),
])
def test_name_mistakes(body: str, message: str) -> None:
    text = error(body)
    assert text.startswith("Corefile:2: rewrite: ")
    assert message in text


# --- the other fields ------------------------------------------------------------------------


def test_type_and_class() -> None:
    assert rule("rewrite type any hinfo") == TypeRule("stop", 255, 13)
    assert rule("rewrite continue class CH IN") == ClassRule("continue", 3, 1)
    assert "invalid type 'BOGUS'" in error("rewrite type BOGUS A")
    assert "invalid class 'XX'" in error("rewrite class IN XX")
    assert "type rules must have exactly two arguments" in error("rewrite type A")
    assert "class rules must have exactly two arguments" in error("rewrite class IN CH HS")


def test_ttl_rules() -> None:
    assert rule("rewrite ttl Example.com 15") == TtlRule("stop", Matcher("exact", "example.com."), 15, 15)
    assert rule("rewrite ttl suffix example.com. 30-") == TtlRule("stop", Matcher("suffix", "example.com."),
                                                                   30, 2_147_483_647)
    r = rule(r"rewrite continue ttl regex (.*)\.coredns\.rocks -30")
    assert isinstance(r, TtlRule) and (r.matcher.kind, r.low, r.high, r.mode) == ("regex", 0, 30, "continue")
    assert "invalid TTL '-'" in error("rewrite ttl a.com -")
    assert "invalid TTL '30-10'" in error("rewrite ttl a.com 30-10")
    assert "too few (1) arguments for a ttl rule" in error("rewrite ttl a.com")
    assert "ttl rule supports only" in error("rewrite ttl glob a.com 5")
    assert "too many" in error("rewrite ttl exact a b 5")


@pytest.mark.parametrize(("text", "expected"), [
    ("15", (15, 15)), ("30-300", (30, 300)), ("-30", (0, 30)), ("30-", (30, 2_147_483_647)), ("0", (0, 0)),
    ("-", None), ("a", None), ("1-2-3", None), ("+5", None), ("4294967296", None), ("5-4", None), ("", None),
])
def test_ttl_ranges(text: str, expected: tuple[int, int] | None) -> None:
    assert ttl_range(text) == expected


def test_rcode_rules() -> None:
    assert rule("rewrite rcode a.com SERVFAIL noerror") == RcodeRule("stop", Matcher("exact", "a.com."), 2, 0)
    r = rule(r"rewrite continue rcode regex (.*)\.coredns\.rocks 2 0")
    assert isinstance(r, RcodeRule) and (r.old, r.new, r.matcher.kind) == (2, 0, "regex")
    assert "invalid matching RCODE 'NOPE'" in error("rewrite rcode a.com NOPE 0")
    assert "invalid replacement RCODE '24'" in error("rewrite rcode a.com 0 24")
    assert "too few (2) arguments for a rcode rule" in error("rewrite rcode a.com 0")
    assert (rcode_value("NOTIMPL"), rcode_value("badcookie"), rcode_value("23"), rcode_value("-1")) == (4, 23, 23, None)


def test_cname_rules() -> None:
    assert rule("rewrite cname Old.Example.net New.Example.net") == CnameRule(
        "stop", "exact", "old.example.net.", "new.example.net.")
    # Only exact rules are made fully qualified.
    assert rule("rewrite cname suffix .CDN.example.net. .other.cdn.com") == CnameRule(
        "stop", "suffix", ".cdn.example.net.", ".other.cdn.com")
    r = rule(r"rewrite cname regex (.*)\.cdn\.example\.net\. {1}.other.cdn.com.")
    assert isinstance(r, CnameRule) and r.pattern is not None
    assert "unknown cname rewrite type: glob" in error("rewrite cname glob a b")
    assert "cname rule" in error("rewrite cname a")


def test_edns0_rules() -> None:
    assert rule("rewrite edns0 local set 0xffee 0x61626364") == EdnsRule("stop", "local", "set", 0xFFEE, b"abcd")
    assert rule("rewrite edns0 local SET 65518 abcd revert") == EdnsRule("stop", "local", "set", 0xFFEE, b"abcd",
                                                                          revert=True)
    assert rule("rewrite edns0 local append 0xffee {client_ip}") == EdnsRule(
        "stop", "local", "append", 0xFFEE, variable="{client_ip}")
    assert rule("rewrite edns0 local set 0xffee {some-plugin/some-label}").variable == "{some-plugin/some-label}"
    assert rule("rewrite edns0 local unset 0xffee") == EdnsRule("stop", "local", "unset", 0xFFEE)
    assert rule("rewrite edns0 nsid set") == EdnsRule("stop", "nsid", "set")
    assert rule("rewrite edns0 subnet set 24 56 revert") == EdnsRule("stop", "subnet", "set", v4_bits=24,
                                                                     v6_bits=56, revert=True)
    assert rule("rewrite edns0 subnet unset") == EdnsRule("stop", "subnet", "unset")
    assert rule("rewrite edns0 local set 0o17 x").code == 15  # Go's base prefixes
    assert rule("rewrite edns0 local set 017 x").code == 15


@pytest.mark.parametrize(("body", "message"), [
    ("rewrite edns0 local", "too few arguments for an EDNS0 rule"),
    ("rewrite edns0 local frob 1 2", "invalid action: 'frob'"),
    ("rewrite edns0 other set", "invalid EDNS0 rule type 'other'"),
    ("rewrite edns0 local set 0xffee", "require three or four arguments"),
    ("rewrite edns0 local set 0x1ffee a", "invalid EDNS0 option code '0x1ffee'"),
    ("rewrite edns0 local set 0xffee 0xabc", "invalid hex data '0xabc'"),
    ("rewrite edns0 local set 0xffee {nope}", "unsupported variable name '{nope}'"),
    ("rewrite edns0 local unset", "exactly one argument"),
    ("rewrite edns0 nsid set x", "no argument but `revert`"),
    ("rewrite edns0 nsid unset x", "no argument"),
    ("rewrite edns0 subnet set 33 56", "invalid IPv4 bit mask length '33'"),
    ("rewrite edns0 subnet set 24 129", "invalid IPv6 bit mask length '129'"),
])
def test_edns0_mistakes(body: str, message: str) -> None:
    assert message in error(body)


@pytest.mark.parametrize(("body", "message", "line"), [
    ("rewrite", "no rule type given", 2),
    ("rewrite continue", "a continue rule must begin with a rule type", 2),
    ("rewrite answer name a b", "response rewrites must begin with a name rule", 2),
    ("rewrite frob a b", "invalid rule type 'frob'", 2),
    ("rewrite name a b {\n ttl x 5\n}", "takes no { } block", 2),
    ("rewrite stop {\n name regex (a) b\n answer name (x {1}\n}", "invalid regex pattern", 4),
    ("rewrite {\n ttl {\n x 5\n }\n}", "may not hold another block", 3),
])
def test_rule_mistakes_name_their_line(body: str, message: str, line: int) -> None:
    text = error(body)
    assert text.startswith(f"Corefile:{line}: rewrite: "), text
    assert message in text


def test_a_mistake_in_a_block_stops_the_whole_configuration() -> None:
    text = ". {\n  rewrite name a.example b.example\n  rewrite name regex (x {1}\n  hosts\n}\n"
    with pytest.raises(ConfigError, match=r"^Corefile:3: rewrite: invalid regex pattern"):
        build(parse_text(text, "Corefile"), "Corefile", Services())


def test_every_rewrite_line_of_a_block_is_one_handler_in_corefile_order() -> None:
    text = ". {\n  rewrite continue name a.example b.example\n  hosts\n  rewrite ttl b.example 5\n}\n"
    built = build(parse_text(text, "Corefile"), "Corefile", Services())
    rewrites = [h for h in built.handlers if h.plugin == "rewrite"]
    assert len(rewrites) == 1
    assert [type(r).__name__ for r in rewrites[0].rules] == ["NameRule", "TtlRule"]  # type: ignore[attr-defined]
    assert [h.plugin for h in built.handlers] == ["rewrite", "hosts"]


# --- Go's regular expressions (interkube.pkg.goregex, tests/pkg/test_goregex.py) ---------------


@pytest.mark.parametrize(("body", "name", "found"), [
    (r"rewrite name regex ^(www)\.a\.org\.\z {1}.b.org", "www.a.org.", True),
    (r"rewrite name regex ^[[:alpha:]]+\.a\.org\.$ x.b.org", "www.a.org.", True),
    (r"rewrite name regex ^[[:alpha:]]+\.a\.org\.$ x.b.org", "w3.a.org.", False),
])
def test_name_patterns_are_read_as_go_reads_them(body: str, name: str, found: bool) -> None:
    r = rule(body)
    assert isinstance(r, NameRule) and r.pattern is not None
    assert (r.pattern.search(name) is not None) == found

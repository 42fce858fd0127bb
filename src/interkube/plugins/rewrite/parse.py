"""Parse `rewrite [continue|stop] name|type|class|edns0|ttl|cname|rcode ...`, one rule a directive.

The arguments are read as CoreDNS 1.15 reads them (plugin/rewrite's setup and rule builders):
keywords (`continue`, `stop`, the field, the match type, edns0 actions) in any letter case,
`answer`, `auto`, `name`, `value`, `metadata` and `revert` as written; names lower-cased and made
fully qualified except regex patterns and cname rules' prefix/suffix/substring strings. A line
with fewer than two arguments takes the tokens of its `{ ... }` block as the rest of the rule
(the block form: one rule, however many lines it spans). Every mistake names the file and line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from interkube.corefile.lexer import Token
from interkube.corefile.parser import Directive
from interkube.dns.mnemonics import class_number, type_number
from interkube.errors import ConfigError
from interkube.pkg.goregex import MAX_PATTERN_LENGTH, PatternError, compile_go
from interkube.plugins.rewrite.patterns import EXACT, MATCH_TYPES, REGEX, Matcher, check_references, normalize

STOP: Final = "stop"
CONTINUE: Final = "continue"

# edns0 actions
APPEND: Final = "append"
REPLACE: Final = "replace"
SET: Final = "set"
UNSET: Final = "unset"

#: The variables an edns0 local option may take its data from (besides metadata labels).
VARIABLES: Final = ("{qname}", "{qtype}", "{client_ip}", "{client_port}", "{protocol}", "{server_ip}",
                    "{server_port}")

#: miekg's StringToRcode: the names a rcode rule may use (numbers 0 to 23 too).
RCODES: Final = {"NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4, "NOTIMPL": 4,
                 "REFUSED": 5, "YXDOMAIN": 6, "YXRRSET": 7, "NXRRSET": 8, "NOTAUTH": 9, "NOTZONE": 10,
                 "DSOTYPENI": 11, "BADSIG": 16, "BADKEY": 17, "BADTIME": 18, "BADMODE": 19, "BADNAME": 20,
                 "BADALG": 21, "BADTRUNC": 22, "BADCOOKIE": 23}
MAX_RCODE: Final = 23
#: The upper end of an open TTL range (`30-`).
MAX_TTL: Final = 2_147_483_647


@dataclass(frozen=True)
class AnswerRule:
    """`answer name FROM TO` (the owner names of a response) or `answer value FROM TO` (the
    names in CNAME, SRV, MX, ... data)."""

    field: str                      # "name" or "value"
    pattern: re.Pattern[str]
    replacement: str                # normalised


@dataclass(frozen=True)
class Part:
    """A piece of a `metadata` rule's replacement: literal text, a group, or a label's value."""

    literal: str = ""
    group: int = -1
    label: str = ""


@dataclass(frozen=True)
class NameRule:
    mode: str
    match: str                      # one of MATCH_TYPES
    source: str                     # normalised, or the pattern's source
    target: str                     # normalised (a regex rule's with its {N} still in it)
    pattern: re.Pattern[str] | None = None
    auto: bool = False              # `answer auto` (always, for exact rules)
    answers: tuple[AnswerRule, ...] = ()
    #: A `metadata` rule's replacement, in pieces (None: not a metadata rule).
    parts: tuple[Part, ...] | None = None


@dataclass(frozen=True)
class TypeRule:
    mode: str
    old: int
    new: int


@dataclass(frozen=True)
class ClassRule:
    mode: str
    old: int
    new: int


@dataclass(frozen=True)
class TtlRule:
    mode: str
    matcher: Matcher
    low: int
    high: int


@dataclass(frozen=True)
class RcodeRule:
    mode: str
    matcher: Matcher
    old: int
    new: int


@dataclass(frozen=True)
class CnameRule:
    mode: str
    match: str
    source: str                     # lower case (normalised for exact)
    target: str
    pattern: re.Pattern[str] | None = None


@dataclass(frozen=True)
class EdnsRule:
    mode: str
    option: str                     # "local", "nsid" or "subnet"
    action: str                     # APPEND, REPLACE, SET or UNSET
    code: int = 0                   # local: the option code
    data: bytes = b""               # local: the literal data
    variable: str = ""              # local: "{client_ip}", ..., or "{plugin/label}"
    v4_bits: int = 0                # subnet: source prefix lengths
    v6_bits: int = 0
    revert: bool = False


Rule = NameRule | TypeRule | ClassRule | TtlRule | RcodeRule | CnameRule | EdnsRule


@dataclass(frozen=True)
class RewriteConfig:
    """One `rewrite` directive: one rule (a block's rewrite directives run as one list)."""

    rule: Rule


def is_label(label: str) -> bool:
    """A metadata label as CoreDNS's metadata.IsLabel takes it: ``plugin/name``, both non-empty."""
    slash = label.find("/")
    return 0 < slash < len(label) - 1


class _Args:
    """The rule's tokens, and errors that point at the right line."""

    def __init__(self, d: Directive, tokens: list[Token]) -> None:
        self.d = d
        self.tokens = tokens

    def error(self, message: str, at: int | None = None) -> ConfigError:
        tok = self.tokens[at] if at is not None and 0 <= at < len(self.tokens) else self.d.token
        return tok.error(f"rewrite: {message}")


def parse(d: Directive) -> RewriteConfig:
    tokens = list(d.args)
    if d.has_block:
        if len(tokens) >= 2:
            raise d.error("a rule written on the directive's line takes no { } block "
                          "(the block form is `rewrite [continue|stop] { RULE }`)")
        for line in d.block:
            if line.has_block:
                raise line.token.error("rewrite: a rule's block may not hold another block")
            tokens.append(line.token)
            tokens.extend(line.args)
    a = _Args(d, tokens)
    if not tokens:
        raise a.error("no rule type given (name, type, class, edns0, ttl, cname or rcode)")
    mode = STOP
    start = 0
    first = tokens[0].text.lower()
    if first in (STOP, CONTINUE):
        mode = first
        if len(tokens) < 2:
            raise a.error(f"a {first} rule must begin with a rule type", 0)
        start = 1
    field = tokens[start].text.lower()
    rest = [t.text for t in tokens[start + 1:]]
    base = start + 1  # the index in tokens of rest[0]
    if field == "answer":
        raise a.error("response rewrites must begin with a name rule", start)
    if field == "name":
        return RewriteConfig(_name_rule(a, mode, rest, base))
    if field in ("type", "class"):
        if len(rest) != 2:
            raise a.error(f"{field} rules must have exactly two arguments", start)
        if field == "type":
            old, new = (_type(a, rest[i], base + i) for i in (0, 1))
            return RewriteConfig(TypeRule(mode, old, new))
        old, new = (_class(a, rest[i], base + i) for i in (0, 1))
        return RewriteConfig(ClassRule(mode, old, new))
    if field == "edns0":
        return RewriteConfig(_edns0_rule(a, mode, rest, base))
    if field == "ttl":
        return RewriteConfig(_ttl_rule(a, mode, rest, base))
    if field == "cname":
        return RewriteConfig(_cname_rule(a, mode, rest, base))
    if field == "rcode":
        return RewriteConfig(_rcode_rule(a, mode, rest, base))
    raise a.error(f"invalid rule type {tokens[start].text!r} "
                  "(expected name, type, class, edns0, ttl, cname or rcode)", start)


def _type(a: _Args, text: str, at: int) -> int:
    number = type_number(text.upper())
    if number is None:
        raise a.error(f"invalid type {text.upper()!r}", at)
    return number


def _class(a: _Args, text: str, at: int) -> int:
    number = class_number(text.upper())
    if number is None:
        raise a.error(f"invalid class {text.upper()!r}", at)
    return number


def _regex(a: _Args, source: str, at: int, replacement: str | None = None) -> re.Pattern[str]:
    try:
        pattern = compile_go(source)
        if replacement is not None:
            check_references(pattern, source, replacement)
    except PatternError as exc:
        raise a.error(f"invalid regex pattern {source!r}: {exc}", at) from None
    return pattern


# --- name ------------------------------------------------------------------------------------


def _name_rule(a: _Args, mode: str, args: list[str], base: int) -> NameRule:
    if len(args) < 2:
        raise a.error("too few arguments for a name rule (expected [TYPE] FROM TO [answer ...])", base - 1)
    if len(args) == 2:
        match, source, target = EXACT, normalize(args[0]), normalize(args[1])
    else:
        match = args[0].lower()
        if match == REGEX:
            source, target = args[1], args[2]
        else:
            source, target = normalize(args[1]), normalize(args[2])
    answers_at = 3
    with_metadata = len(args) > 3 and args[3] == "metadata"
    if with_metadata:
        if match != REGEX:
            raise a.error("metadata is only supported for regex name rules", base + 3)
        answers_at = 4
    auto = False
    answers: tuple[AnswerRule, ...] = ()
    if len(args) > answers_at:
        auto, answers = _answer_rules(a, match, args[answers_at:], base + answers_at)
    if match not in MATCH_TYPES:
        raise a.error(f"name rule supports only exact, prefix, suffix, substring and regex name matching, "
                      f"received: {args[0]}", base)
    if match == EXACT:
        return NameRule(mode, match, source, target, auto=True, answers=answers)
    if match != REGEX:
        return NameRule(mode, match, source, target, auto=auto, answers=answers)
    if with_metadata:
        pattern = _regex(a, source, base + 1)
        parts = _replacement_parts(a, target if target.endswith(".") else target + ".", pattern.groups, base + 2)
        return NameRule(mode, match, source, target, pattern, auto, answers, parts)
    pattern = _regex(a, source, base + 1, target)
    return NameRule(mode, match, source, normalize(target), pattern, auto, answers)


def _answer_rules(a: _Args, match: str, args: list[str], base: int) -> tuple[bool, tuple[AnswerRule, ...]]:
    """`answer auto`, `answer name FROM TO`, `answer value FROM TO`, repeated (`answer` may be
    left out after the first)."""
    if len(args) < 2:
        raise a.error(f"invalid arguments for {match} rule: expected answer auto|name FROM TO|value FROM TO",
                      base)
    auto = False
    rules: list[AnswerRule] = []
    names = 0
    i = 0
    last = ""
    while i < len(args):
        if not last and args[i] != "answer":
            raise a.error(f"too many arguments for a {match} rule: {args[i]!r} is not `answer`", base + i)
        if args[i] == "answer":
            i += 1
        if i == len(args):
            raise a.error(f"type missing for answer rule for {match} rule", base + i - 1)
        last = args[i]
        i += 1
        if last == "auto":
            auto = True
            continue
        if last not in ("name", "value"):
            raise a.error(f"invalid type {last!r} for answer rule for {match} rule (auto, name or value)",
                          base + i - 1)
        if len(args) - i < 2:
            raise a.error(f"{last} answer rule for {match} rule: 2 arguments required", base + i - 1)
        pattern = _regex(a, args[i], base + i, args[i + 1])
        rules.append(AnswerRule(last, pattern, normalize(args[i + 1])))
        names += last == "name"
        i += 2
    if auto and names:
        raise a.error("auto name answer rule cannot be combined with explicit name answer rules", base)
    return auto, tuple(rules)


def _replacement_parts(a: _Args, replacement: str, groups: int, at: int) -> tuple[Part, ...]:
    """A metadata rule's replacement: literals (lower-cased), ``{N}`` groups, ``{plugin/label}``."""
    parts: list[Part] = []
    rest = replacement
    while rest:
        before, brace, after = rest.partition("{")
        if "}" in before:
            raise a.error("unmatched closing brace in metadata name replacement", at)
        if before:
            parts.append(Part(literal=before.lower()))
        if not brace:
            break
        label, closed, rest = after.partition("}")
        if not closed:
            raise a.error("unclosed placeholder in metadata name replacement", at)
        if label.isdigit():
            if int(label) > groups:
                raise a.error(f"capture group {label} does not exist in name matching pattern", at)
            parts.append(Part(group=int(label)))
        elif is_label(label) and "{" not in label:
            parts.append(Part(label=label))
        else:
            raise a.error(f"invalid metadata label {label!r} in name replacement", at)
    return tuple(parts)


# --- ttl, rcode, cname -----------------------------------------------------------------------


def _matcher(a: _Args, kind: str, text: str, at: int, what: str) -> Matcher:
    kind = kind.lower()
    if kind == REGEX:
        if len(text) > MAX_PATTERN_LENGTH:
            raise a.error(f"regex pattern too long in a {what} rule: {len(text)} > {MAX_PATTERN_LENGTH}", at)
        return Matcher(kind, text, _regex(a, text, at))
    if kind not in MATCH_TYPES:
        raise a.error(f"{what} rule supports only exact, prefix, suffix, substring and regex name matching", at - 1)
    return Matcher(kind, normalize(text))


def ttl_range(text: str) -> tuple[int, int] | None:
    """`SECONDS`, `MIN-MAX`, `MIN-` or `-MAX` as (min, max); None when invalid."""
    def number(s: str) -> int | None:
        return int(s) if s.isascii() and s.isdigit() and int(s) <= 0xFFFFFFFF else None

    low_text, dash, high_text = text.partition("-")
    if not dash:
        value = number(text)
        return None if value is None else (value, value)
    if "-" in high_text or (not low_text and not high_text):
        return None
    low = number(low_text) if low_text else 0
    high = number(high_text) if high_text else MAX_TTL
    if low is None or high is None or low > high:
        return None
    return low, high


def _ttl_rule(a: _Args, mode: str, args: list[str], base: int) -> TtlRule:
    if len(args) < 2:
        raise a.error(f"too few ({len(args)}) arguments for a ttl rule", base - 1)
    if len(args) > 3:
        raise a.error(f"too many ({len(args)}) arguments for a ttl rule", base + 3)
    ttls = ttl_range(args[-1])
    if ttls is None:
        raise a.error(f"invalid TTL {args[-1]!r} for a ttl rule (SECONDS, MIN-MAX, MIN- or -MAX)",
                      base + len(args) - 1)
    if len(args) == 3:
        return TtlRule(mode, _matcher(a, args[0], args[1], base + 1, "ttl"), *ttls)
    return TtlRule(mode, Matcher(EXACT, normalize(args[0])), *ttls)


def rcode_value(text: str) -> int | None:
    """A rcode rule's RCODE: a number up to 23 or a name (NOERROR, SERVFAIL, ...)."""
    if text.isascii() and text.isdigit():
        if int(text) <= MAX_RCODE:
            return int(text)
    return RCODES.get(text.upper())


def _rcode_rule(a: _Args, mode: str, args: list[str], base: int) -> RcodeRule:
    if len(args) < 3:
        raise a.error(f"too few ({len(args)}) arguments for a rcode rule", base - 1)
    if len(args) > 4:
        raise a.error(f"too many ({len(args)}) arguments for a rcode rule", base + 4)
    old_at = len(args) - 2
    old, new = rcode_value(args[old_at]), rcode_value(args[old_at + 1])
    if old is None:
        raise a.error(f"invalid matching RCODE {args[old_at]!r} for a rcode rule", base + old_at)
    if new is None:
        raise a.error(f"invalid replacement RCODE {args[old_at + 1]!r} for a rcode rule", base + old_at + 1)
    if len(args) == 4:
        return RcodeRule(mode, _matcher(a, args[0], args[1], base + 1, "rcode"), old, new)
    return RcodeRule(mode, Matcher(EXACT, normalize(args[0])), old, new)


def _cname_rule(a: _Args, mode: str, args: list[str], base: int) -> CnameRule:
    if len(args) == 3:
        match = args[0].lower()
        if match not in MATCH_TYPES:
            raise a.error(f"unknown cname rewrite type: {match}", base)
        source, target = args[1].lower(), args[2].lower()
    elif len(args) == 2:
        match, source, target = EXACT, args[0].lower(), args[1].lower()
    else:
        raise a.error(f"expected [TYPE] FROM TO for a cname rule, got {len(args)} arguments", base - 1)
    if match == EXACT:
        source, target = normalize(source), normalize(target)
    pattern = _regex(a, source, base + len(args) - 2) if match == REGEX else None
    return CnameRule(mode, match, source, target, pattern)


# --- edns0 -----------------------------------------------------------------------------------


def _go_uint(text: str, bits: int) -> int | None:
    """Go's strconv.ParseUint(text, 0, bits): decimal, 0x hex, 0o/0 octal, 0b binary."""
    if not text.isascii() or not text[:1].isalnum():  # (no sign, no space)
        return None
    try:
        if len(text) > 1 and text[0] == "0" and text[1].isdigit():
            value = int(text[1:], 8)
        else:
            value = int(text, 0)
    except ValueError:
        return None
    return value if 0 <= value < (1 << bits) else None


def _edns0_rule(a: _Args, mode: str, args: list[str], base: int) -> EdnsRule:
    if len(args) < 2:
        raise a.error("too few arguments for an EDNS0 rule", base - 1)
    option, action = args[0].lower(), args[1].lower()
    if action not in (APPEND, REPLACE, SET, UNSET):
        raise a.error(f"invalid action: {action!r} (append, replace, set or unset)", base + 1)
    if option not in ("local", "nsid", "subnet"):
        raise a.error(f"invalid EDNS0 rule type {args[0]!r} (local, nsid or subnet)", base)
    if action == UNSET:
        want = 3 if option == "local" else 2
        if len(args) != want:
            raise a.error(f"{option} unset takes {'exactly one argument (the code)' if want == 3 else 'no argument'}",
                          base + 1)
        code = _code(a, args[2], base + 2) if option == "local" else 0
        return EdnsRule(mode, option, action, code=code)
    revert = args[-1] == "revert"
    if revert:
        args = args[:-1]
    if option == "nsid":
        if len(args) != 2:
            raise a.error("EDNS0 nsid rules take no argument but `revert`", base + 2)
        return EdnsRule(mode, option, action, revert=revert)
    if len(args) != 4:
        raise a.error(f"EDNS0 {option} rules require three or four arguments", base - 1)
    if option == "local":
        code = _code(a, args[2], base + 2)
        data = args[3]
        if data.startswith("{") and data.endswith("}"):
            if data not in VARIABLES and not is_label(data[1:-1]):
                raise a.error(f"unsupported variable name {data!r}", base + 3)
            return EdnsRule(mode, option, action, code=code, variable=data, revert=revert)
        raw = data.encode()
        if data.startswith("0x"):
            digits = data[2:]
            if len(digits) % 2 or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise a.error(f"invalid hex data {data!r}", base + 3)
            raw = bytes.fromhex(digits)
        return EdnsRule(mode, option, action, code=code, data=raw, revert=revert)
    v4, v6 = _go_uint(args[2], 16), _go_uint(args[3], 16)
    if v4 is None or v4 > 32:
        raise a.error(f"invalid IPv4 bit mask length {args[2]!r}", base + 2)
    if v6 is None or v6 > 128:
        raise a.error(f"invalid IPv6 bit mask length {args[3]!r}", base + 3)
    return EdnsRule(mode, option, action, v4_bits=v4, v6_bits=v6, revert=revert)


def _code(a: _Args, text: str, at: int) -> int:
    code = _go_uint(text, 16)
    if code is None:
        raise a.error(f"invalid EDNS0 option code {text!r}", at)
    return code


__all__ = ["APPEND", "CONTINUE", "REPLACE", "SET", "STOP", "UNSET", "AnswerRule", "ClassRule", "CnameRule",
           "EdnsRule", "NameRule", "Part", "RcodeRule", "RewriteConfig", "Rule", "TtlRule", "TypeRule", "parse",
           "rcode_value", "ttl_range"]

"""Parse `template CLASS TYPE [ZONES...] { match; answer; additional; authority; rcode; ederror;
fallthrough }`: the patterns compiled, the record templates parsed, every mistake at its line."""

from __future__ import annotations

import re
from dataclasses import dataclass

from interkube.corefile.lexer import Token
from interkube.corefile.parser import Directive
from interkube.dns.mnemonics import class_number, type_number
from interkube.errors import ConfigError
from interkube.pkg import args
from interkube.pkg import fallthrough as fall
from interkube.pkg.goregex import PatternError, compile_go
from interkube.plugins.template.gotemplate import GoTemplate, TemplateSyntaxError
from interkube.plugins.template.gotemplate import parse as parse_template

ANY = 255
#: miekg's StringToRcode, which CoreDNS reads `rcode` with (upper case only; BADVERS is BADSIG).
RCODES = {"NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4, "NOTIMPL": 4, "REFUSED": 5,
          "YXDOMAIN": 6, "YXRRSET": 7, "NXRRSET": 8, "NOTAUTH": 9, "NOTZONE": 10, "DSOTYPENI": 11,
          "BADSIG": 16, "BADKEY": 17, "BADTIME": 18, "BADMODE": 19, "BADNAME": 20, "BADALG": 21,
          "BADTRUNC": 22, "BADCOOKIE": 23}
SECTIONS = ("answer", "additional", "authority")


@dataclass(frozen=True)
class Pattern:
    """A `match` pattern as written (what .Regex gives) and as Python runs it."""

    source: str
    regex: re.Pattern[str]


#: What `match` defaults to: every name.
MATCH_ALL = Pattern(".*", re.compile(".*"))


@dataclass(frozen=True)
class RecordTemplate:
    """One `answer`, `additional` or `authority` argument: a template that prints one record in
    zone-file form."""

    section: str
    template: GoTemplate
    where: str          # file:line, for log lines about it

    @property
    def source(self) -> str:
        return self.template.source


@dataclass(frozen=True)
class Ederror:
    code: int
    reason: str = ""


@dataclass(frozen=True)
class TemplateConfig:
    qclass: int                              # ANY (255): every class
    qtype: int                               # ANY (255): every type
    zones: tuple[str, ...] = ()              # empty: the server block's zones
    patterns: tuple[Pattern, ...] = (MATCH_ALL,)
    records: tuple[RecordTemplate, ...] = ()  # in Corefile order; each section keeps its order
    rcode: int = 0
    ederror: Ederror | None = None
    fallthrough: fall.Fallthrough = fall.NEVER

    def section(self, name: str) -> tuple[RecordTemplate, ...]:
        return tuple(r for r in self.records if r.section == name)

    @property
    def depends(self) -> frozenset[str]:
        """What the answers depend on beyond the question (see gotemplate.DEP_*)."""
        out: frozenset[str] = frozenset()
        for r in self.records:
            out |= r.template.depends
        return out


def _error(tok: Token, message: str) -> ConfigError:
    return tok.error(f"template: {message}")


def _values(opt: Directive) -> tuple[Token, ...]:
    args.no_block(opt)
    if not opt.args:
        raise _error(opt.token, f"{opt.name}: expected at least 1 argument, got 0")
    return opt.args


def _record(section: str, tok: Token) -> RecordTemplate:
    try:
        template = parse_template(tok.text)
    except TemplateSyntaxError as exc:
        raise _error(tok, f"{section}: could not compile template {tok.text!r}: {exc}") from None
    return RecordTemplate(section, template, tok.where)


def parse(d: Directive) -> TemplateConfig:
    a = args.nargs(d, 2)
    qclass = class_number(a[0].text)
    if qclass is None:
        raise _error(a[0], f"invalid query class {a[0].text!r} (IN, CH, HS, CS, NONE or ANY)")
    qtype = type_number(a[1].text)
    if qtype is None:
        raise _error(a[1], f"invalid query type {a[1].text!r} (a type such as A, AAAA, PTR, or ANY)")
    zones = args.zones(a[2:])
    patterns: list[Pattern] = []
    records: list[RecordTemplate] = []
    rcode = 0
    ederror: Ederror | None = None
    fallthrough = fall.NEVER
    for opt in d.block:
        name = opt.name
        if name == "match":
            for tok in _values(opt):
                try:
                    patterns.append(Pattern(tok.text, compile_go(tok.text)))
                except PatternError as exc:
                    raise _error(tok, f"could not parse regex {tok.text!r}: {exc}") from None
        elif name in SECTIONS:
            records.extend(_record(name, tok) for tok in _values(opt))
        elif name == "rcode":
            tok = args.nargs(opt, 1, 1)[0]
            args.no_block(opt)
            if tok.text not in RCODES:
                raise _error(tok, f"unknown rcode {tok.text!r} ({', '.join(RCODES)})")
            rcode = RCODES[tok.text]
        elif name == "ederror":
            given = args.nargs(opt, 1, 2)
            args.no_block(opt)
            code = args.integer(given[0], 0, 65535, what="extended DNS error code")
            ederror = Ederror(code, given[1].text if len(given) == 2 else "")
        elif name == "fallthrough":
            fallthrough = fall.parse(opt)
        elif name == "upstream":
            args.no_block(opt)  # a leftover option CoreDNS reads and ignores ("remove soon")
        elif name in ("var", "expr"):
            raise _error(opt.token, f"option {name!r} is not supported (expressions in the expr language)")
        else:
            raise _error(opt.token, f"unknown option {name!r} (match, answer, additional, authority, "
                                    "rcode, ederror, fallthrough)")
    return TemplateConfig(qclass, qtype, zones, tuple(patterns) or (MATCH_ALL,), tuple(records), rcode,
                          ederror, fallthrough)

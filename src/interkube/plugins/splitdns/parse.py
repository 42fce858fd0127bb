"""Parse ``splitdns [ZONES...] { pod REGEX TEMPLATE; host NAME ADDRESS...; from CLUSTER; ttl SECONDS;
other_types nodata|next; fallthrough [ZONES...] }``. Pure: text in, frozen config out.

``pod`` and ``host`` lines are rules, tried in the order written; the other options are given
at most once. A ``pod`` REGEX is a Go regular expression (RE2, as CoreDNS's rewrite takes it,
translated by :mod:`interkube.pkg.goregex`) searched in the question name as CoreDNS's plugins
see it (lower case, fully qualified: ``db-0.db.example.com.``); TEMPLATE names the kubernetes
name the match stands for, ``{0}`` the whole match and ``{1}``, ``{2}``, ... its groups.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import dns.exception
import dns.name

from interkube.corefile.lexer import Token
from interkube.corefile.parser import Directive
from interkube.kube.dnsrecords import MAX_TTL
from interkube.pkg import args
from interkube.pkg import fallthrough as fall
from interkube.pkg.goregex import PatternError, compile_go

PLUGIN = "splitdns"
#: The kubernetes plugin's default TTL: a pod that goes away is forgotten as soon as there.
DEFAULT_TTL = 5
#: What other types than A and AAAA get at a name splitdns answers: NODATA with the zone's SOA,
#: or the next plugin's answer (the public one).
OTHER_TYPES = ("nodata", "next")
_GROUP = re.compile(r"\{(\d+)\}")


@dataclass(frozen=True)
class PodRule:
    """``pod REGEX TEMPLATE``: a name the pattern finds a match in stands for TEMPLATE's name."""

    source: str
    pattern: re.Pattern[str]
    template: str                   # lower case, fully qualified
    where: str

    def target(self, name: str) -> str | None:
        """The kubernetes name ``name`` (lower case, fully qualified) stands for; None when the
        pattern finds nothing in it. The text may be no valid name (too long): checked after."""
        m = self.pattern.search(name)
        if m is None:
            return None
        groups = (m.group(0), *m.groups())
        return _GROUP.sub(lambda g: groups[int(g.group(1))] or "", self.template)


@dataclass(frozen=True)
class HostRule:
    """``host NAME ADDRESS...``: a fixed answer for NAME."""

    name: str                       # lower case, fully qualified
    addresses: tuple[str, ...]      # normalised texts, IPv4 and IPv6
    where: str


Rule = PodRule | HostRule


@dataclass(frozen=True)
class SplitDnsConfig:
    zones: tuple[str, ...] = ()     # empty: the server block's zones
    rules: tuple[Rule, ...] = ()
    cluster: str | None = None      # `from`: a kubernetes stanza's cluster name; None: the block's first
    cluster_token: Token | None = None  # where `from` names it, for messages
    ttl: int = DEFAULT_TTL
    other_types: str = "nodata"
    fallthrough: fall.Fallthrough = fall.NEVER
    where: str = ""


def parse(d: Directive) -> SplitDnsConfig:
    zones = args.zones(d.args)
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    values: dict[str, object] = {}
    for opt in d.block:
        args.no_block(opt)
        if opt.name == "pod":
            rules.append(_pod(opt))
            continue
        if opt.name == "host":
            rules.append(_host(opt))
            continue
        if opt.name in seen:
            raise opt.token.error(f"{PLUGIN}: option {opt.name!r} given twice (first at {seen[opt.name]})")
        seen[opt.name] = opt.where
        if opt.name == "from":
            tok = args.nargs(opt, 1, 1)[0]
            values["cluster"], values["cluster_token"] = tok.text, tok
        elif opt.name == "ttl":
            values["ttl"] = args.integer(args.nargs(opt, 1, 1)[0], 0, MAX_TTL, what="ttl")
        elif opt.name == "other_types":
            tok = args.nargs(opt, 1, 1)[0]
            if tok.text not in OTHER_TYPES:
                raise tok.error(f"{PLUGIN}: other_types must be one of {', '.join(OTHER_TYPES)}, not {tok.text!r}")
            values["other_types"] = tok.text
        elif opt.name == "fallthrough":
            values["fallthrough"] = fall.parse(opt)
        else:
            raise args.unknown_option(opt, PLUGIN)
    if not rules:
        raise d.error("needs at least one `pod REGEX TEMPLATE` or `host NAME ADDRESS...` rule")
    return SplitDnsConfig(zones=zones, rules=tuple(rules), where=d.where, **values)  # type: ignore[arg-type]


def _pod(opt: Directive) -> PodRule:
    source, template = args.nargs(opt, 2, 2)
    try:
        pattern = compile_go(source.text)
    except PatternError as exc:
        raise source.error(f"{PLUGIN}: could not parse regex {source.text!r}: {exc}") from None
    text = template.text.lower()
    text = text if text.endswith(".") else text + "."
    for g in _GROUP.finditer(text):
        if int(g.group(1)) > pattern.groups:
            raise template.error(f"{PLUGIN}: the template {template.text!r} uses group {{{g.group(1)}}}, and the "
                                 f"regex {source.text!r} has {pattern.groups} group(s)")
    # With every group one letter, the template must be a name (no empty label, none too long).
    _name(template, _GROUP.sub("a", text), "template")
    return PodRule(source.text, pattern, text, opt.where)


def _host(opt: Directive) -> HostRule:
    tokens = args.nargs(opt, 2)
    name = _name(tokens[0], tokens[0].text, "host name").to_text().lower()
    addresses = tuple(dict.fromkeys(str(args.ip_address(tok)) for tok in tokens[1:]))
    return HostRule(name, addresses, opt.where)


def _name(tok: Token, text: str, what: str) -> dns.name.Name:
    try:
        return dns.name.from_text(text)
    except dns.exception.DNSException as exc:
        raise tok.error(f"{PLUGIN}: {what} {tok.text!r} is not a DNS name: {exc}") from None

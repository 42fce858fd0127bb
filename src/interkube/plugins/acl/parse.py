"""Parse `acl [ZONES...] { allow|block|filter|drop [type QTYPE...] [net SOURCE...] }`."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import dns.rdatatype

from interkube.corefile.parser import Directive
from interkube.pkg import args

ACTIONS = ("allow", "block", "filter", "drop")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Rule:
    action: str
    types: frozenset[int] | None      # None: every type
    nets: tuple[Network, ...] | None  # None: every source
    where: str


@dataclass(frozen=True)
class AclConfig:
    zones: tuple[str, ...]            # empty: the server block's zones
    rules: tuple[Rule, ...]


def _rule(opt: Directive) -> Rule:
    if opt.name not in ACTIONS:
        raise opt.token.error(f"acl: unknown action {opt.name!r} (expected {', '.join(ACTIONS)})")
    types: set[int] | None = None
    nets: list[Network] | None = None
    mode = None
    for tok in opt.args:
        if tok.text in ("type", "net"):
            mode = tok.text
            if mode == "type" and types is None:
                types = set()
            if mode == "net" and nets is None:
                nets = []
            continue
        if mode is None:
            raise tok.error(f"acl: expected `type` or `net` before {tok.text!r}")
        if tok.text == "*":
            if mode == "type":
                types = None
            else:
                nets = None
            mode = mode + "*"  # nothing may follow a wildcard
            continue
        if mode.endswith("*"):
            raise tok.error(f"acl: nothing may follow '*' in {mode[:-1]}")
        if mode == "type":
            assert types is not None  # set when `type` was read ('*' leaves mode "type*")
            try:
                types.add(int(dns.rdatatype.from_text(tok.text.upper())))
            except dns.rdatatype.UnknownRdatatype:
                raise tok.error(f"acl: unknown query type {tok.text!r}") from None
        else:
            assert nets is not None  # likewise, for `net`
            nets.append(args.network(tok))
    if types is not None and not types:
        raise opt.token.error("acl: `type` needs at least one query type (or *)")
    if nets is not None and not nets:
        raise opt.token.error("acl: `net` needs at least one network (or *)")
    return Rule(opt.name, frozenset(types) if types is not None else None,
                tuple(nets) if nets is not None else None, opt.where)


def parse(d: Directive) -> AclConfig:
    rules = tuple(_rule(opt) for opt in d.block)
    if not rules:
        raise d.error("needs at least one rule in its block")
    return AclConfig(args.zones(d.args), rules)

"""The answer to a rewritten query, made the answer to the client's: what CoreDNS's
ResponseReverter does, on a dnspython parse of the answer (this runs once per question and
answer: see the handler's memo).

* The question becomes the client's again (its name, type and class). The answer is rendered
  with the client's question first, and names equal to it are compressed into pointers to it,
  so that a template of this answer (interkube.dns.wire.Template) gives every client its own
  letters back.
* Response rules are applied to every record of the authority, answer and additional sections,
  in that order, the rules of the last rewrite first; a rcode rule once per record (once when
  there are none), as in CoreDNS. Names are matched in lower case.
* `revert` takes EDNS options out again; options set by `local` rules are copied into an answer
  from memory (see :func:`transform`'s ``echo``).
* A `cname` rule's lookup of the new target is asked of the caller (:class:`NeedLookup`): on
  the fast path it may have to wait, so the caller runs the lookup its own way and calls again.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from interkube.dns.reader import TYPE_OPT, Malformed, Walk
from interkube.dns.wire import HEADER_LEN, Query
from interkube.plugins.rewrite.rules import (
    CnameTarget,
    OptionRevert,
    OwnerNames,
    RcodeMap,
    ResponseRule,
    TtlClamp,
    ValueNames,
)

#: CoreDNS's bound on lookups a cname rule makes from within another's (its loop key).
MAX_CNAME_DEPTH: Final = 8

#: The rdata field that holds the name a value rule rewrites, by type (CoreDNS's list).
VALUE_FIELDS: Final = {
    dns.rdatatype.SRV: "target", dns.rdatatype.MX: "exchange", dns.rdatatype.CNAME: "target",
    dns.rdatatype.NS: "target", dns.rdatatype.DNAME: "target", dns.rdatatype.NAPTR: "replacement",
    dns.rdatatype.SOA: "mname", dns.rdatatype.PTR: "target",
}

_U32 = struct.Struct("!I")


class NeedLookup(Exception):
    """A cname rule needs the answer to (name, qtype) first: the caller looks it up, adds the
    answer (or None) to the lookups it passes, and calls again."""

    def __init__(self, name: str, qtype: int) -> None:
        super().__init__(name, qtype)
        self.key = (name, qtype)


#: Answers to cname rules' lookups, by (name, qtype); None: the lookup gave nothing.
Lookups = Mapping[tuple[str, int], bytes | None]


class _Record:
    __slots__ = ("name", "rdtype", "rdclass", "ttl", "rdata")

    def __init__(self, name: dns.name.Name, rdclass: int, ttl: int, rdata: dns.rdata.Rdata) -> None:
        self.name = name
        self.rdtype = rdata.rdtype
        self.rdclass = rdclass
        self.ttl = ttl
        self.rdata = rdata


def _records(section: list[dns.rrset.RRset]) -> list[_Record]:
    return [_Record(rrset.name, rrset.rdclass, rrset.ttl, rd) for rrset in section for rd in rrset]


def _text(name: dns.name.Name) -> str:
    return name.to_text().lower()


def _name(text: str) -> dns.name.Name | None:
    try:
        return dns.name.from_text(text)
    except (dns.exception.DNSException, ValueError):
        return None  # a rule that makes no valid name leaves the name as it was


@dataclass
class Transformed:
    """The client's answer, and what memoizing it needs."""

    wire: bytes
    #: Whether the answer is a function of the downstream answer's bytes alone (no lookup).
    pure: bool
    #: Offsets of the TTL fields (OPT's excluded), downstream and here, in the same order; None
    #: when the records do not correspond one to one.
    ttl_offsets: tuple[tuple[int, ...], tuple[int, ...]] | None


class _Message:
    """The answer being rewritten: records by section, rcode, TC."""

    def __init__(self, msg: dns.message.Message) -> None:
        self.rcode = int(msg.rcode())
        self.truncated = bool(msg.flags & dns.flags.TC)
        self.authority = _records(msg.authority)
        self.answer = _records(msg.answer)
        self.additional = _records(msg.additional)


def transform(resp: bytes, client: Query, asked_type: int, rules: Sequence[ResponseRule],
              echo: Sequence[tuple[int, bytes]], lookups: Lookups, depth: int) -> Transformed:
    """The answer ``resp`` (to the rewritten query, whose type was ``asked_type``) rewritten
    by ``rules`` (in the order they apply) and given the client's question.

    ``echo``: options to add to the answer's OPT record when it has no option of its own (an
    answer from memory: CoreDNS copies the query's options that rewrite set into such an
    answer, and a forwarded answer's OPT is the upstream's). Raises :class:`NeedLookup`, and
    ValueError (dnspython's errors included) when ``resp`` cannot be read.
    """
    msg = dns.message.from_wire(resp, one_rr_per_rrset=True, ignore_trailing=True)
    name, _ = dns.name.from_wire(client.wire, HEADER_LEN)
    msg.question = [dns.rrset.RRset(name, dns.rdataclass.RdataClass.make(client.qclass),
                                    dns.rdatatype.RdataType.make(client.qtype))]
    m = _Message(msg)
    pure = True
    if rules:
        records = 0
        for section in (m.authority, list(m.answer), m.additional):
            for rec in section:
                records += 1
                for rule in rules:
                    if isinstance(rule, CnameTarget):
                        pure &= not _cname(rule, rec, m, asked_type, lookups, depth)
                    else:
                        _apply(rule, rec, m)
        if not records:
            for rule in rules:
                if isinstance(rule, RcodeMap) and m.rcode == rule.old:
                    m.rcode = rule.new
    msg.answer = [dns.rrset.from_rdata(r.name, r.ttl, r.rdata) for r in m.answer]
    msg.authority = [dns.rrset.from_rdata(r.name, r.ttl, r.rdata) for r in m.authority]
    msg.additional = [dns.rrset.from_rdata(r.name, r.ttl, r.rdata) for r in m.additional]
    if m.truncated:
        msg.flags |= dns.flags.TC
    else:
        msg.flags &= ~dns.flags.TC
    if msg.edns >= 0:
        options = [(o.otype, o.to_wire()) for o in msg.options]
        own = bool(options)
        for rule in rules:
            if isinstance(rule, OptionRevert):
                rule.apply(options)
        if not own:
            have = {code for code, _ in options}
            options += [o for o in echo if o[0] not in have]
        msg.use_edns(0, msg.ednsflags, msg.payload,
                     options=[dns.edns.GenericOption(code, data) for code, data in options])
    msg.set_rcode(dns.rcode.Rcode.make(m.rcode))
    wire = msg.to_wire(max_size=65535)
    return Transformed(wire, pure, _ttl_offsets(resp, wire) if pure else None)


def _apply(rule: ResponseRule, rec: _Record, m: _Message) -> None:
    if isinstance(rule, OwnerNames):
        text = _text(rec.name)
        new = rule.rewriter(text)
        if new != text:
            rec.name = _name(new) or rec.name
    elif isinstance(rule, ValueNames):
        field = VALUE_FIELDS.get(rec.rdtype)
        if field is None:
            return
        old_name: dns.name.Name = getattr(rec.rdata, field)
        text = _text(old_name)
        new = rule.rewriter(text)
        if new != text:
            value = _name(new)
            if value is not None:
                rec.rdata = rec.rdata.replace(**{field: value})
    elif isinstance(rule, TtlClamp):
        rec.ttl = rule(rec.ttl)
    elif isinstance(rule, RcodeMap):
        if m.rcode == rule.old:
            m.rcode = rule.new


def _cname(rule: CnameTarget, rec: _Record, m: _Message, asked_type: int, lookups: Lookups, depth: int) -> bool:
    """Apply a cname rule to one record; True when it rewrote the answer (from a lookup)."""
    if rec.rdtype != dns.rdatatype.CNAME or depth > MAX_CNAME_DEPTH:
        return False
    found = rule.targets(_text(rec.rdata.target))  # type: ignore[attr-defined]
    if found is None:
        return False
    old, new = found
    new_name = _name(new)
    if new_name is None:
        return False
    key = (new_name.to_text(), asked_type)
    if key not in lookups:
        raise NeedLookup(*key)
    answer = lookups[key]
    if answer is None:
        return False
    try:
        looked_up = dns.message.from_wire(answer, one_rr_per_rrset=True, ignore_trailing=True)
    except (dns.exception.DNSException, ValueError):
        return False
    kept: list[_Record] = []
    for r in m.answer:
        if r.rdtype != dns.rdatatype.CNAME:
            continue  # (records before the rewritten CNAME that are not CNAMEs go, as in CoreDNS)
        kept.append(r)
        if _text(r.rdata.target) == old:  # type: ignore[attr-defined]
            r.rdata = r.rdata.replace(target=new_name)
            break
    m.answer = kept + _records(looked_up.answer)
    m.truncated = bool(looked_up.flags & dns.flags.TC)
    return True


def _ttl_offsets(down: bytes, out: bytes) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """Where the TTLs are in the downstream answer and in ours, when the records correspond."""
    try:
        first = tuple(rdata - 6 for *_, rtype, _c, _t, rdata, _l in _walk(down) if rtype != TYPE_OPT)
        second = tuple(rdata - 6 for *_, rtype, _c, _t, rdata, _l in _walk(out) if rtype != TYPE_OPT)
    except Malformed:
        return None
    return (first, second) if len(first) == len(second) else None


def _walk(wire: bytes) -> list[tuple[bytes, int, int, int, int, int, int, int]]:
    return list(Walk(wire).records())


__all__ = ["MAX_CNAME_DEPTH", "VALUE_FIELDS", "Lookups", "NeedLookup", "Transformed", "transform"]

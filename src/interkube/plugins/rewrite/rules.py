"""The rules at work: a query's question and EDNS options as the rules read and change them.

:func:`evaluate` runs a block's rules over one query as CoreDNS's rewrite plugin does: in
Corefile order, each rule either rewrites (and a `stop` rule ends the list) or is ignored; a
rule that rewrote contributes the *response rules* that will undo or adjust its effect in the
answer (applied last rule first). The outcome is a :class:`Plan`: the question to ask the rest
of the chain, its EDNS options, the response rules, or the reason the rewritten name is invalid.

Rules read the name as CoreDNS's ``state.Name()``: presentation form, lower case.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence
from typing import Final

import dns.exception
import dns.name

from interkube.dns.wire import Query, name_to_text, opt_record
from interkube.plugin.request import Request, local_address
from interkube.plugins.rewrite.parse import (
    APPEND,
    CONTINUE,
    REPLACE,
    SET,
    UNSET,
    ClassRule,
    CnameRule,
    EdnsRule,
    NameRule,
    RcodeRule,
    Rule,
    TtlRule,
    TypeRule,
)
from interkube.plugins.rewrite.patterns import (
    EXACT,
    PREFIX,
    SUBSTRING,
    SUFFIX,
    RegexReplace,
    Remap,
    Rewriter,
    SuffixSwap,
    expand,
)

OPTION_NSID: Final = 3
OPTION_ECS: Final = 8
#: Options miekg/dns reads into types of their own: every other code is an EDNS0_LOCAL to it,
#: which is what a `local` rule finds and replaces.
TYPED_OPTIONS: Final = frozenset({1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 15})
#: The UDP payload size of an OPT record a rule adds to a query that had none (CoreDNS's).
ADDED_OPT_PAYLOAD: Final = 4096

_U16 = struct.Struct("!H")
_QUESTION_FIXED = struct.Struct("!HH")


# --- response rules: what a rewrite asks of the answer --------------------------------------


class ResponseRule:
    """One adjustment of the answer (see interkube.plugins.rewrite.response)."""

    __slots__ = ()


class OwnerNames(ResponseRule):
    """Owner names of every record through a rewriter (`answer name`, `answer auto`)."""

    __slots__ = ("rewriter",)

    def __init__(self, rewriter: Rewriter) -> None:
        self.rewriter = rewriter


class ValueNames(ResponseRule):
    """Names in CNAME, DNAME, NS, PTR, MX, SRV, NAPTR and SOA data (`answer value`, `auto`)."""

    __slots__ = ("rewriter",)

    def __init__(self, rewriter: Rewriter) -> None:
        self.rewriter = rewriter


class TtlClamp(ResponseRule):
    __slots__ = ("low", "high")

    def __init__(self, low: int, high: int) -> None:
        self.low = low
        self.high = high

    def __call__(self, ttl: int) -> int:
        if ttl < self.low:
            return self.low
        if ttl > self.high:
            return self.high
        return ttl


class RcodeMap(ResponseRule):
    __slots__ = ("old", "new")

    def __init__(self, old: int, new: int) -> None:
        self.old = old
        self.new = new


class CnameTarget(ResponseRule):
    """A CNAME whose target the rule matches points at the new target, and the records after
    it are replaced by what a lookup of the new target answers."""

    __slots__ = ("rule",)

    def __init__(self, rule: CnameRule) -> None:
        self.rule = rule

    def targets(self, target: str) -> tuple[str, str] | None:
        """(the target as found, the new target) when the rule applies to ``target``."""
        rule = self.rule
        match = rule.match
        if match == EXACT:
            return (rule.source, rule.target) if target == rule.source else None
        if match == PREFIX:
            if target.startswith(rule.source):
                return target, rule.target + target[len(rule.source):]
        elif match == SUFFIX:
            if target.endswith(rule.source):
                return target, target[:len(target) - len(rule.source)] + rule.target
        elif match == SUBSTRING:
            if rule.source in target:
                return target, target.replace(rule.source, rule.target)
        else:
            assert rule.pattern is not None
            m = rule.pattern.search(target)
            if m is not None:
                return target, expand(rule.target, m)
        return None


class OptionRevert(ResponseRule):
    """`revert`: the answer does not carry what a rule did to an EDNS option: the option is
    removed (``old`` None: the rule added it) or gets its data from before the rule back."""

    __slots__ = ("code", "old")

    def __init__(self, code: int, old: bytes | None) -> None:
        self.code = code
        self.old = old

    def apply(self, options: list[tuple[int, bytes]]) -> None:
        for i, (code, _) in enumerate(options):
            if code == self.code:
                if self.old is None:
                    del options[i]
                else:
                    options[i] = (code, self.old)
                return


def metadata_value(req: Request, label: str) -> str | None:
    """The value of a metadata label for this query (``Request.meta`` holds, where a *metadata*
    plugin collects them, a string or a function that computes it), None when it has none."""
    meta = req.meta
    found = meta.get(label) if meta is not None else None
    if callable(found):
        found = found()
    return None if found is None else str(found)


# --- the question as the rules see it -------------------------------------------------------


class State:
    """The query's question and EDNS options, as the rules change them one after the other."""

    __slots__ = ("req", "qname", "qtype", "qclass", "options", "edns", "payload", "do", "opt_changed",
                 "_wire")

    def __init__(self, req: Request) -> None:
        q = req.query
        self.req = req
        #: The name as the request holds it: the client's letters until a rule replaces it.
        self.qname = name_to_text(req.wire[12:q.qname_end])
        self.qtype = q.qtype
        self.qclass = q.qclass
        self.edns = q.edns
        self.payload = q.payload
        self.do = q.do
        self.options: list[tuple[int, bytes]] | None = None
        self.opt_changed = False
        self._wire: bytes | None = q.lname

    @property
    def name(self) -> str:
        """CoreDNS's state.Name(): lower case."""
        return self.qname.lower()

    def rename(self, name: str) -> None:
        self.qname = name
        self._wire = None

    def name_wire(self) -> bytes | None:
        """The question name in lower-cased wire form; None when it is no valid name."""
        if self._wire is None:
            self._wire = _to_wire(self.qname)
        return self._wire

    def opt(self) -> list[tuple[int, bytes]]:
        """The query's EDNS options, an OPT record added when it had none (as CoreDNS does for
        any edns0 rule, even one that then changes nothing)."""
        if self.options is None:
            self.options = _read_options(self.req.query)
            if not self.edns:
                self.edns = True
                self.payload = ADDED_OPT_PAYLOAD
                self.opt_changed = True
        return self.options

    def opt_rdata(self) -> bytes:
        return b"".join(_U16.pack(code) + _U16.pack(len(data)) + data for code, data in self.opt())


def _to_wire(text: str) -> bytes | None:
    if not text or text.startswith("..") or (text.startswith(".") and text != "."):
        return None
    try:
        wire = dns.name.from_text(text).canonicalize().to_wire()
    except (dns.exception.DNSException, ValueError):
        return None
    assert wire is not None
    return wire


def _read_options(q: Query) -> list[tuple[int, bytes]]:
    """The EDNS options of a query the fast parser read (checked at admission)."""
    wire = q.wire
    if not q.edns:
        return []
    start = q.question_end + 11   # root owner, type, class, ttl, rdlength
    end = len(wire)
    out = []
    while start + 4 <= end:
        code, length = struct.unpack_from("!HH", wire, start)
        out.append((code, wire[start + 4:start + 4 + length]))
        start += 4 + length
    return out


# --- the rules --------------------------------------------------------------------------------


def _auto(new: str, old: str) -> list[ResponseRule]:
    """`answer auto`: names equal to (or below) the rewritten name back to the original."""
    back = Remap(new, old)
    return [OwnerNames(back), ValueNames(back)]


def _static(rule: NameRule) -> list[ResponseRule]:
    out: list[ResponseRule] = []
    if rule.match == SUFFIX and rule.auto:
        # A suffix rule's `answer auto` swaps the suffixes back, whatever the name.
        swap = SuffixSwap(rule.target, rule.source)
        out += [OwnerNames(swap), ValueNames(swap)]
    for a in rule.answers:
        rw = RegexReplace(a.pattern, a.replacement)
        out.append(OwnerNames(rw) if a.field == "name" else ValueNames(rw))
    return out


class Evaluated:
    """What the rules of a block asked for one query."""

    __slots__ = ("state", "responses", "invalid", "rewrote")

    def __init__(self, state: State) -> None:
        self.state = state
        self.responses: list[ResponseRule] = []
        self.invalid = ""
        self.rewrote = False


def _name(rule: NameRule, st: State) -> list[ResponseRule] | None:
    name = st.name
    match = rule.match
    if match == EXACT:
        if name != rule.source:
            return None
        new = rule.target
    elif match == PREFIX:
        if not name.startswith(rule.source):
            return None
        new = rule.target + name[len(rule.source):]
    elif match == SUFFIX:
        if not name.endswith(rule.source):
            return None
        new = name[:len(name) - len(rule.source)] + rule.target
    elif match == SUBSTRING:
        if rule.source not in name:
            return None
        new = name.replace(rule.source, rule.target)
    else:
        assert rule.pattern is not None
        m = rule.pattern.search(name)
        if m is None:
            return None
        if rule.parts is None:
            new = expand(rule.target, m)
        else:
            pieces = []
            for part in rule.parts:
                if part.group >= 0:
                    pieces.append(m.group(part.group) or "")
                elif part.label:
                    value = metadata_value(st.req, part.label)
                    if not value:
                        return None  # a label without a value skips the rule (stop or not)
                    pieces.append(value.lower())
                else:
                    pieces.append(part.literal)
            new = "".join(pieces)
    st.rename(new)
    out = _auto(new, name) if rule.auto and match != SUFFIX else []
    return out + _static(rule)


def _edns(rule: EdnsRule, st: State) -> list[ResponseRule] | None:
    if rule.option == "local" and rule.variable:
        data = variable(rule.variable, st)
        if not data:
            return None
        return _set_option(rule, st, rule.code, data, variable=True)
    code = {"local": rule.code, "nsid": OPTION_NSID, "subnet": OPTION_ECS}[rule.option]
    options = st.opt()
    if rule.action == UNSET:
        kept = [o for o in options if o[0] != code]
        if len(kept) != len(options):
            options[:] = kept
            st.opt_changed = True
        return []
    if rule.option == "subnet":
        data = subnet(st.req, rule.v4_bits, rule.v6_bits)
        if data is None:
            return None
        return _set_option(rule, st, code, data, variable=True)
    return _set_option(rule, st, code, rule.data if rule.option == "local" else b"", variable=False)


def _set_option(rule: EdnsRule, st: State, code: int, data: bytes, *, variable: bool) -> list[ResponseRule] | None:
    """append/replace/set one option, as CoreDNS's local, variable, nsid and subnet rules do.

    An existing option is replaced by replace and set; append leaves it (and is then ignored
    for variable and subnet rules, but adds a second option for literal local and nsid rules,
    as CoreDNS does)."""
    options = st.opt()
    typed = code in TYPED_OPTIONS
    for i, (have, old) in enumerate(options):
        if have != code or (rule.option == "local" and typed):
            continue  # (miekg reads a typed option as its own type, never as a local one)
        if rule.action in (REPLACE, SET):
            options[i] = (code, data)
            st.opt_changed = True
            return [OptionRevert(code, old)] if rule.revert else []
        if variable:
            return None
    if rule.action in (APPEND, SET):
        options.append((code, data))
        st.opt_changed = True
        return [OptionRevert(code, None)] if rule.revert else []
    return None


def variable(name: str, st: State) -> bytes | None:
    """The data of an edns0 local variable for this query; None when it has none."""
    req = st.req
    if name == "{qname}":
        return st.qname.encode()
    if name == "{qtype}":
        return _U16.pack(st.qtype)
    if name == "{protocol}":
        return b"udp" if req.proto == "udp" else b"tcp"
    if name in ("{client_ip}", "{client_port}"):
        host, port = str(req.client[0]), int(req.client[1])
    elif name in ("{server_ip}", "{server_port}"):
        host, port = local_address(req)
    else:
        value = metadata_value(req, name[1:-1])
        return value.encode() if value else None
    if name.endswith("_port}"):
        return _U16.pack(port)
    return _address_bytes(req.family, host)


def _address_bytes(family: int, host: str) -> bytes | None:
    """An address in the client's family, as CoreDNS's ipToWire (None when it has no such form)."""
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if family == 4:
        if isinstance(addr, ipaddress.IPv6Address):
            return addr.ipv4_mapped.packed if addr.ipv4_mapped is not None else None
        return addr.packed
    if isinstance(addr, ipaddress.IPv4Address):
        return ipaddress.IPv6Address(b"\x00" * 10 + b"\xff\xff" + addr.packed).packed
    return addr.packed


def subnet(req: Request, v4_bits: int, v6_bits: int) -> bytes | None:
    """The Client Subnet option data for the client's address (RFC 7871 section 6)."""
    try:
        addr = ipaddress.ip_address(req.client_ip.split("%", 1)[0])
    except ValueError:
        return None
    family, bits = (1, v4_bits) if addr.version == 4 else (2, v6_bits)
    network = ipaddress.ip_network(f"{addr}/{bits}", strict=False)
    return struct.pack("!HBB", family, bits, 0) + network.network_address.packed[:(bits + 7) // 8]


def evaluate(rules: Sequence[Rule], req: Request) -> Evaluated:
    """Run ``rules`` over ``req``'s question, as CoreDNS's rewrite handler does."""
    st = State(req)
    ev = Evaluated(st)
    for rule in rules:
        responses: list[ResponseRule] | None
        if isinstance(rule, NameRule):
            responses = _name(rule, st)
        elif isinstance(rule, TypeRule):
            responses = None
            if st.qtype == rule.old and rule.old and rule.new:
                st.qtype = rule.new
                responses = []
        elif isinstance(rule, ClassRule):
            responses = None
            if st.qclass == rule.old and rule.old and rule.new:
                st.qclass = rule.new
                responses = []
        elif isinstance(rule, TtlRule):
            responses = [TtlClamp(rule.low, rule.high)] if rule.matcher.matches(st.name) else None
        elif isinstance(rule, RcodeRule):
            responses = [RcodeMap(rule.old, rule.new)] if rule.matcher.matches(st.name) else None
        elif isinstance(rule, CnameRule):
            responses = [CnameTarget(rule)]
        else:
            responses = _edns(rule, st)
        if responses is None:
            continue
        ev.rewrote = True
        if st.name_wire() is None:
            ev.invalid = f"invalid name after rewrite: {st.qname}"
            return ev
        ev.responses.extend(responses)
        if rule.mode != CONTINUE:
            break
    return ev


def question_bytes(st: State) -> bytes:
    """The rewritten question: lower-cased name, type, class."""
    name = st.name_wire()
    assert name is not None
    return name + _QUESTION_FIXED.pack(st.qtype, st.qclass)


def opt_bytes(st: State) -> bytes:
    """The rewritten query's OPT record (the client's flags kept)."""
    return opt_record(st.do, st.payload, options=st.opt_rdata())


def echoed(st: State, responses: Sequence[ResponseRule], codes: frozenset[int]) -> tuple[tuple[int, bytes], ...]:
    """The options of the rewritten query (with `revert` applied) that CoreDNS copies into an
    answer that carries no OPT record of its own: the local codes the block's rules handle."""
    if not codes or st.options is None:
        return ()
    options = list(st.options)
    for r in reversed(responses):
        if isinstance(r, OptionRevert):
            r.apply(options)
    return tuple(o for o in options if o[0] in codes)


__all__ = ["ADDED_OPT_PAYLOAD", "CnameTarget", "Evaluated", "OptionRevert", "OwnerNames", "RcodeMap",
           "ResponseRule", "State", "TtlClamp", "ValueNames", "echoed", "evaluate", "local_address", "opt_bytes",
           "question_bytes", "subnet", "variable"]

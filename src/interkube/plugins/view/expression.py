"""The expressions of `view NAME { expr EXPRESSION }`: the part of expr-lang real Corefiles use.

CoreDNS compiles a view's expression with expr-lang (github.com/expr-lang/expr) over the
functions of its ``plugin/pkg/expression`` package. This module reads the same syntax for the
subset that selects queries: literals (numbers, strings in single, double or back quotes, true,
false, nil, lists), comparison (``== != < > <= >=``, chained as expr-lang chains them), ``and``
``or`` ``not`` (and ``&& || !``), ``in``, ``matches``, ``contains``, ``startsWith``,
``endsWith`` (each also after ``not``), parentheses, and calls of the query functions.
Everything else expr-lang has (arithmetic, member access, builtins, closures, ``let``,
``if``, the ternary, pipes, maps) is refused at setup by name as not supported, and what
expr-lang's own parser or type checker refuses is refused here with its reason: a view never
silently becomes a block that matches nothing.

An expression compiles once, at setup, to nested Python closures over the query (no ``eval``,
nothing the Corefile writes is ever executed). Types are checked as expr-lang checks them,
so a call with the wrong arguments or a comparison of a string with a number is an error with
its column, before anything starts. At run time a function that fails (``incidr`` of something
that is not an address) makes the whole expression false, as CoreDNS's view treats an error.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import dns.rdataclass
import dns.rdatatype

from interkube.dns.memo import Memo
from interkube.dns.wire import name_to_text
from interkube.pkg.goregex import PatternError, compile_go
from interkube.plugin import metadata
from interkube.plugin.request import Request, local_address
from interkube.plugins.view.syntax import (
    BUILTINS,
    ORDERING,
    Binary,
    Call,
    ExpressionError,
    ListOf,
    Literal,
    Name,
    Node,
    Parser,
    Unary,
)

#: A compiled expression part: the query in, a value out (may raise ValueError: a failed call).
Eval = Callable[[Request], Any]


# --- the query functions ---------------------------------------------------------------------

BOOL, INT, FLOAT, STR, NIL, LIST, ANY = "bool", "int", "float64", "string", "nil", "[]", "interface {}"
_NUMBERS = frozenset({INT, FLOAT})

#: Question names and client addresses in the text the functions give, per wire name and
#: socket address (shared by every view: the same few clients and names recur).
_NAME_TEXT: Memo[bytes, str] = Memo(8192)
_CLIENT_TEXT: Memo[str, str] = Memo(8192)
_TYPE_TEXT: dict[int, str] = {}
_CLASS_TEXT: dict[int, str] = {}


def question_name(req: Request) -> str:
    """name(): the question name, lower case, fully qualified, as CoreDNS writes it."""
    lname = req.query.lname
    text = _NAME_TEXT.table.get(lname)
    if text is None:
        text = name_to_text(lname)
        _NAME_TEXT.remember(lname, text)
    return text


def question_type(req: Request) -> str:
    qtype = req.query.qtype
    text = _TYPE_TEXT.get(qtype)
    return _mnemonic(_TYPE_TEXT, qtype, dns.rdatatype) if text is None else text


def question_class(req: Request) -> str:
    qclass = req.query.qclass
    text = _CLASS_TEXT.get(qclass)
    return _mnemonic(_CLASS_TEXT, qclass, dns.rdataclass) if text is None else text


def _mnemonic(table: dict[int, str], code: int, module: Any) -> str:
    """A type's or class's name (``TYPE65280`` for one without), kept in ``table``."""
    text: str = module.to_text(code)
    table[code] = text
    return text


def client_ip(req: Request) -> str:
    """client_ip(): an IPv4 client of a dual-stack socket in its IPv4 form, as Go prints it."""
    host = str(req.client[0])
    text = _CLIENT_TEXT.table.get(host)
    if text is None:
        text = host[7:] if host.startswith("::ffff:") and "." in host else host
        _CLIENT_TEXT.remember(host, text)
    return text


def _proto(req: Request) -> str:
    return "udp" if req.proto == "udp" else "tcp"  # TLS and HTTPS are TCP connections to CoreDNS


def _bufsize(req: Request) -> int:
    """bufsize(): what CoreDNS's request.Size gives: 64 KiB over TCP, else the EDNS size, 512
    at least."""
    if req.proto != "udp":
        return 65535
    q = req.query
    return max(512, q.payload) if q.edns else 512


@dataclass(frozen=True)
class Function:
    """One function of CoreDNS's expression environment."""

    params: tuple[str, ...]
    result: str
    call: Callable[..., Any]
    #: What its value is a function of, cheap to read: the memo key part of a view that calls
    #: it. None: it reads nothing of the query (incidr: its arguments say) or, with ``varies``,
    #: something that differs on almost every query (the ID, the port, the size, metadata).
    key: Callable[[Request], Any] | None
    varies: bool = False


_IP_BYTES: Memo[str, bytes] = Memo(8192)


def _go_ip(text: str) -> bytes:
    """Go's net.ParseIP: an address without a zone, as 4 or 16 bytes; ValueError if not one."""
    packed = _IP_BYTES.table.get(text)
    if packed is None:
        if "%" in text:
            raise ValueError(f"{text!r} has a zone")
        packed = ipaddress.ip_address(text).packed
        _IP_BYTES.remember(text, packed)
    return packed


_V4_IN_V6 = bytes(10) + b"\xff\xff"


def _to4(addr: bytes) -> bytes | None:
    if len(addr) == 4:
        return addr
    return addr[12:] if addr[:12] == _V4_IN_V6 else None


@dataclass(frozen=True, slots=True)
class Cidr:
    """A network as Go's IPNet.Contains sees it: the address length it applies to (4 or 16
    bytes), its masked number and its mask as integers."""

    length: int
    number: int
    mask: int

    @classmethod
    def parse(cls, text: str) -> Cidr:
        """Go's net.ParseCIDR (``ADDRESS/BITS``, nothing else); ValueError if not one."""
        addr_text, slash, bits = text.partition("/")
        if not slash or not bits.isascii() or not bits.isdigit():
            raise ValueError(f"invalid CIDR address: {text}")
        addr = _go_ip(addr_text)
        prefix = int(bits)
        if prefix > len(addr) * 8:
            raise ValueError(f"invalid CIDR address: {text}")
        width = len(addr) * 8
        mask = ((1 << width) - 1) ^ ((1 << (width - prefix)) - 1)
        network = (int.from_bytes(addr, "big") & mask).to_bytes(len(addr), "big")
        # IPNet.Contains compares in the IPv4 form when the network has one (::ffff:a.b.c.d/96
        # and longer), with the mask's last four bytes.
        short = _to4(network)
        if short is not None and len(network) == 16:
            network, mask = short, mask & 0xFFFFFFFF
        return cls(len(network), int.from_bytes(network, "big"), mask)

    def contains(self, addr: bytes) -> bool:
        short = _to4(addr)
        if short is not None:
            addr = short
        return len(addr) == self.length and int.from_bytes(addr, "big") & self.mask == self.number


_CIDRS: Memo[str, Cidr] = Memo(1024)


def incidr(ip: str, cidr: str) -> bool:
    """incidr(ip, cidr): whether ``ip`` is in ``cidr``; ValueError if either is not one."""
    net = _CIDRS.table.get(cidr)
    if net is None:
        net = Cidr.parse(cidr)
        _CIDRS.remember(cidr, net)
    return net.contains(_go_ip(ip))


def _metadata(req: Request, label: str) -> str:
    return metadata.value(req, label) or ""


def _server_ip(req: Request) -> str:
    return local_address(req)[0]


def _server_port(req: Request) -> str:
    return str(local_address(req)[1])


FUNCTIONS: Final[dict[str, Function]] = {
    "incidr": Function((STR, STR), BOOL, incidr, None),
    "metadata": Function((STR,), STR, _metadata, None, varies=True),
    "type": Function((), STR, question_type, lambda r: r.query.qtype),
    "name": Function((), STR, question_name, lambda r: r.query.lname),
    "class": Function((), STR, question_class, lambda r: r.query.qclass),
    "proto": Function((), STR, _proto, _proto),
    "size": Function((), INT, lambda r: len(r.wire), None, varies=True),
    "client_ip": Function((), STR, client_ip, lambda r: r.client[0]),
    "port": Function((), STR, lambda r: str(r.client[1]), None, varies=True),
    "id": Function((), INT, lambda r: (r.wire[0] << 8) | r.wire[1], None, varies=True),
    "opcode": Function((), INT, lambda r: (r.query.flags >> 11) & 0xF, lambda r: (r.query.flags >> 11) & 0xF),
    "do": Function((), BOOL, lambda r: r.query.do, lambda r: r.query.do),
    "bufsize": Function((), INT, _bufsize, _bufsize),
    "server_ip": Function((), STR, _server_ip, lambda r: (r.local, r.route.server)),
    "server_port": Function((), STR, _server_port, lambda r: (r.local, r.route.server)),
}

# --- type checking and compiling -------------------------------------------------------------


@dataclass(frozen=True)
class Compiled:
    """A checked node: its type, how to evaluate it, and its value when it is a constant."""

    kind: str                   # BOOL, INT, FLOAT, STR, NIL, or LIST + element type
    run: Eval
    constant: bool = False
    value: Any = None
    elements: str = ANY         # the element type of a list


def _const(kind: str, value: Any, elements: str = ANY) -> Compiled:
    return Compiled(kind, lambda _req: value, True, value, elements)


def _comparable(a: str, b: str) -> bool:
    """expr-lang's ComparableTo for the types this subset has."""
    return (a in (ANY, NIL) or b in (ANY, NIL) or (a in _NUMBERS and b in _NUMBERS)
            or (a == LIST and b == LIST) or a == b)


def _shown(c: Compiled) -> str:
    return f"[]{c.elements}" if c.kind == LIST else c.kind


def _tag(value: Any) -> tuple[str, Any]:
    """A value as a set member compares in expr-lang: numbers by value whatever their type,
    booleans never equal to numbers."""
    if value is None:
        return ("nil", None)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("number", value)
    return (type(value).__name__, value)


def _equal(a: Any, b: Any) -> bool:
    return _tag(a) == _tag(b)


class Compiler:
    """Checks a tree as expr-lang's checker does and turns it into closures; records which
    query functions it calls."""

    def __init__(self) -> None:
        self.uses: set[str] = set()

    def compile(self, node: Node) -> Compiled:
        if isinstance(node, Literal):
            v = node.value
            kind = NIL if v is None else BOOL if isinstance(v, bool) else INT if isinstance(v, int) \
                else FLOAT if isinstance(v, float) else STR
            return _const(kind, v)
        if isinstance(node, ListOf):
            return self.list_of(node)
        if isinstance(node, Name):
            if node.name in FUNCTIONS:
                raise ExpressionError(f"{node.name} is a function: call it, {node.name}()", node.column)
            raise ExpressionError(f"unknown name {node.name}", node.column)
        if isinstance(node, Call):
            return self.call(node)
        if isinstance(node, Unary):
            return self.unary(node)
        return self.binary(node)

    def list_of(self, node: ListOf) -> Compiled:
        items = [self.compile(item) for item in node.items]
        kinds = {i.kind for i in items}
        elements = kinds.pop() if len(kinds) == 1 and LIST not in kinds else ANY
        if all(i.constant for i in items):
            return _const(LIST, tuple(i.value for i in items), elements)
        runs = [i.run for i in items]
        return Compiled(LIST, lambda req: tuple(r(req) for r in runs), elements=elements)

    def call(self, node: Call) -> Compiled:
        fn = FUNCTIONS.get(node.name)
        if fn is None:
            if node.name in BUILTINS:
                raise ExpressionError(f"the function {node.name}() is not supported", node.column)
            raise ExpressionError(f"unknown name {node.name}", node.column)
        if len(node.args) != len(fn.params):
            few = len(node.args) < len(fn.params)
            raise ExpressionError(f"{'not enough' if few else 'too many'} arguments to call {node.name}", node.column)
        args = [self.compile(a) for a in node.args]
        for arg, want, given in zip(args, fn.params, node.args, strict=True):
            if arg.kind != want and arg.kind not in (ANY, NIL):
                raise ExpressionError(f"cannot use {_shown(arg)} as argument (type {want}) to call {node.name}",
                                      given.column)
        if fn.key is not None or fn.varies:
            self.uses.add(node.name)
        call = fn.call
        if node.name == "incidr":
            return self.incidr(node, args)
        if node.name == "metadata":
            label = args[0]
            if label.constant:
                text = label.value
                return Compiled(STR, lambda req: call(req, text))
            read = label.run
            return Compiled(STR, lambda req: call(req, read(req)))
        return Compiled(fn.result, call)

    def incidr(self, node: Call, args: list[Compiled]) -> Compiled:
        ip, cidr = args
        if not cidr.constant:
            ip_run, cidr_run = ip.run, cidr.run
            return Compiled(BOOL, lambda req: incidr(ip_run(req), cidr_run(req)))
        try:
            net = Cidr.parse(cidr.value)
        except (ValueError, TypeError):
            # CoreDNS compiles it and the view never matches (every call fails): a mistake to
            # point at, not a block to keep silently unused.
            raise ExpressionError(f"incidr: {cidr.value!r} is not a CIDR (ADDRESS/BITS)",
                                  node.args[1].column) from None
        contains = net.contains
        if ip.constant:
            ip_value = ip.value
            return Compiled(BOOL, lambda _req: contains(_go_ip(ip_value)))
        ip_run = ip.run
        return Compiled(BOOL, lambda req: contains(_go_ip(ip_run(req))))

    def unary(self, node: Unary) -> Compiled:
        c = self.compile(node.operand)
        run = c.run
        if node.op in ("not", "!"):
            if c.kind != BOOL:
                hint = " (`not` binds tighter than comparisons: write not (a == b))" if c.kind != NIL else ""
                raise ExpressionError(f"invalid operation: {node.op} (mismatched type {_shown(c)}){hint}",
                                      node.column)
            if c.constant:
                return _const(BOOL, not c.value)
            return Compiled(BOOL, lambda req: not run(req))
        if c.kind not in _NUMBERS:
            raise ExpressionError(f"invalid operation: {node.op} (mismatched type {_shown(c)})", node.column)
        if node.op == "+":
            return c
        if c.constant:
            return _const(c.kind, -c.value)
        return Compiled(c.kind, lambda req: -run(req))

    def binary(self, node: Binary) -> Compiled:
        op = node.op
        left, right = self.compile(node.left), self.compile(node.right)
        lk, rk = left.kind, right.kind
        mismatch = ExpressionError(f"invalid operation: {op} (mismatched types {_shown(left)} and {_shown(right)})",
                                   node.column)
        lr, rr = left.run, right.run
        if op in ("and", "&&", "or", "||"):
            if lk != BOOL or rk != BOOL:
                raise mismatch
            if op in ("and", "&&"):
                return Compiled(BOOL, lambda req: lr(req) and rr(req))
            return Compiled(BOOL, lambda req: lr(req) or rr(req))
        if op in ("==", "!="):
            if not _comparable(lk, rk):
                raise mismatch
            if lk == LIST or rk == LIST:
                raise ExpressionError("comparing lists is not supported", node.column)
            same = op == "=="
            if (lk == rk and lk in (STR, BOOL)) or (lk in _NUMBERS and rk in _NUMBERS):
                # Both sides of one type (the checker says): Python's == is expr-lang's.
                if right.constant:
                    want_value = right.value
                    if same:
                        return Compiled(BOOL, lambda req: lr(req) == want_value)
                    return Compiled(BOOL, lambda req: lr(req) != want_value)
                if same:
                    return Compiled(BOOL, lambda req: lr(req) == rr(req))
                return Compiled(BOOL, lambda req: lr(req) != rr(req))
            if right.constant:
                want = _tag(right.value)
                return Compiled(BOOL, lambda req: (_tag(lr(req)) == want) is same)
            return Compiled(BOOL, lambda req: _equal(lr(req), rr(req)) is same)
        if op in ORDERING:
            if not ((lk in _NUMBERS and rk in _NUMBERS) or (lk == STR and rk == STR)):
                raise mismatch
            compare = _ORDER_FUNCTIONS[op]
            return Compiled(BOOL, lambda req: compare(lr(req), rr(req)))
        if op == "in":
            return self.membership(node, left, right, mismatch)
        if op == "matches":
            return self.matches(node, left, right, mismatch)
        if op in ("contains", "startsWith", "endsWith"):
            if lk != STR or rk != STR:
                raise mismatch
            if op == "contains":
                return Compiled(BOOL, lambda req: rr(req) in lr(req))
            if op == "startsWith":
                return Compiled(BOOL, lambda req: lr(req).startswith(rr(req)))
            return Compiled(BOOL, lambda req: lr(req).endswith(rr(req)))
        raise ExpressionError(f"the {op} operator is not supported", node.column)

    def membership(self, node: Binary, left: Compiled, right: Compiled, mismatch: ExpressionError) -> Compiled:
        if right.kind != LIST:
            raise mismatch
        if not _comparable(left.kind, right.elements):
            raise ExpressionError(f"cannot use {_shown(left)} as type {right.elements} in array", node.column)
        lr, rr = left.run, right.run
        if right.constant:
            members = frozenset(_tag(v) for v in right.value)
            return Compiled(BOOL, lambda req: _tag(lr(req)) in members)
        return Compiled(BOOL, lambda req: any(_equal(lr(req), v) for v in rr(req)))

    def matches(self, node: Binary, left: Compiled, right: Compiled, mismatch: ExpressionError) -> Compiled:
        if left.kind != STR or right.kind != STR:
            raise mismatch
        lr = left.run
        if right.constant:
            try:
                search = go_regexp(right.value).search
            except ValueError as exc:
                raise ExpressionError(str(exc), node.right.column) from None
            return Compiled(BOOL, lambda req: search(lr(req)) is not None)
        rr = right.run
        return Compiled(BOOL, lambda req: go_regexp(rr(req)).search(lr(req)) is not None)


_ORDER_FUNCTIONS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "<": lambda a, b: a < b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b}

_GO_REGEXPS: Memo[str, re.Pattern[str]] = Memo(1024)


def go_regexp(pattern: str) -> re.Pattern[str]:
    """``pattern`` (Go's regexp syntax, as ``matches`` takes it) compiled by interkube.pkg.goregex,
    remembered (a pattern that is not a constant is compiled when first met); ValueError where Go
    would refuse it or Python could not read it alike."""
    compiled = _GO_REGEXPS.table.get(pattern)
    if compiled is None:
        try:
            compiled = compile_go(pattern)
        except PatternError as exc:
            raise ValueError(f"error parsing regexp {pattern!r}: {exc}") from None
        _GO_REGEXPS.remember(pattern, compiled)
    return compiled


# --- programs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Program:
    """One compiled ``expr`` line."""

    text: str
    run: Eval
    #: The query functions it calls.
    uses: frozenset[str]


def compile_expression(text: str) -> Program:
    """Compile ``text``; ExpressionError (with its column) if expr-lang (or this subset)
    refuses it, or if it cannot be true (its type is not bool)."""
    compiler = Compiler()
    compiled = compiler.compile(Parser(text).parse())
    if compiled.kind != BOOL:
        raise ExpressionError(f"the expression is a {_shown(compiled)}, not a condition: the view would never "
                              "match", 1)
    return Program(text, compiled.run, frozenset(compiler.uses))


def run_all(programs: Sequence[Program], req: Request) -> bool:
    """Whether every program is true for ``req`` (a failed call makes one false), as CoreDNS."""
    for program in programs:
        try:
            if program.run(req) is not True:
                return False
        except (ValueError, TypeError, re.error):
            return False
    return True


__all__ = ["FUNCTIONS", "Cidr", "Compiled", "ExpressionError", "Program", "client_ip", "compile_expression",
           "go_regexp", "incidr", "question_name", "run_all"]

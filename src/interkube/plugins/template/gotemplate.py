"""The part of Go's text/template that CoreDNS template Corefiles use: parsed once, run per answer.

Supported: text; actions ``{{ PIPELINE }}`` with the trim markers ``{{-`` and ``-}}``; comments
``{{/* ... */}}``; ``{{ if }} {{ else if }} {{ else }} {{ end }}``; pipelines of commands joined by
``|`` (the value on the left goes in as the last argument); operands that are the data's fields
(``.Name``, ``.Group.a``, ``.Question.Qtype``), string literals ("..." and `raw`), integers,
``true``/``false`` and parenthesised pipelines; and the functions ``printf print println index
len eq ne lt le gt ge and or not`` and CoreDNS's ``parseInt`` (strconv.ParseUint). Values print
as Go prints them (``[a b]`` for .Match, ``map[0:x a:y]`` for .Group, ``<no value>`` for a
missing .Group key).

Everything else Go's templates have (range, with, variables, define/template/block, the other
functions, method calls on the message) is refused when the Corefile is read, with a message that
says it is not supported, instead of being accepted and failing on queries. So are fields the
data does not have: in CoreDNS a misspelt field parses and every matching query then gets
SERVFAIL. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

# --- errors ----------------------------------------------------------------------------------


class TemplateSyntaxError(Exception):
    """A template that cannot be parsed, or uses what is not supported (the caller adds file:line)."""


class TemplateExecError(Exception):
    """A template that failed for one question (a missing index, parseInt of a bad number)."""


# --- values ----------------------------------------------------------------------------------


class Uint64(int):
    """An integer Go types as uint64 (what parseInt returns): it prints as Go names it."""

    go_type = "uint64"


class Uint16(int):
    """An integer Go types as uint16 (a question's Qtype, Qclass, a message's Id)."""

    go_type = "uint16"


class _NoValue:
    """What Go's templates give for a missing map key reached as a field (.Group.nosuch)."""

    def __repr__(self) -> str:
        return "<no value>"


NO_VALUE: Final = _NoValue()

Value = str | int | bool | tuple[str, ...] | Mapping[str, str] | _NoValue


def go_type(v: Value) -> str:
    """The Go type name of a value, as printf's error notes write it."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (Uint64, Uint16)):
        return v.go_type
    if isinstance(v, int):
        return "int"
    if isinstance(v, str):
        return "string"
    if isinstance(v, tuple):
        return "[]string"
    if isinstance(v, _NoValue):
        return "<nil>"
    return "map[string]string"


def go_print(v: Value) -> str:
    """A value as Go's fmt.Print writes it (and so as a template prints it)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, str)):
        return str(v)
    if isinstance(v, tuple):
        return "[" + " ".join(v) + "]"
    if isinstance(v, _NoValue):
        return "<no value>"
    return "map[" + " ".join(f"{k}:{v[k]}" for k in sorted(v)) + "]"


def truth(v: Value) -> bool:
    """Go's template truth: false, 0, "" and empty slices and maps are false, as is no value."""
    if isinstance(v, _NoValue):
        return False
    return bool(v)


# --- the data a template sees ----------------------------------------------------------------

#: Kinds of what a field holds, for the checks made when the Corefile is read.
STR, INT, BOOL, LIST, MAP = "string", "int", "bool", "[]string", "map[string]string"

#: What a template's output depends on beyond the question (its name, type, class and shape).
DEP_CLIENT = "client"        # .Remote: per client address
DEP_CASE = "case"            # .Question.Name: the name as the client spelt it
DEP_QUERY = "query"          # .Message.Id: every query differs

#: The fields of CoreDNS's template data that interkube gives, with their kinds: one level for
#: plain values, two for .Question and .Message (of which only these fields are supported).
FIELDS: Final[Mapping[str, str | Mapping[str, str]]] = {
    "Zone": STR, "Name": STR, "Regex": STR, "Class": STR, "Type": STR, "Remote": STR,
    "Match": LIST, "Group": MAP,
    "Question": {"Name": STR, "Qtype": INT, "Qclass": INT},
    "Message": {"Id": INT, "RecursionDesired": BOOL, "CheckingDisabled": BOOL},
}
_DEPENDS: Final = {("Remote",): DEP_CLIENT, ("Question", "Name"): DEP_CASE, ("Message", "Id"): DEP_QUERY}
_NOT_SUPPORTED_FIELDS: Final = {
    "Var": "needs the `var` option, which is not supported",
    "Meta": "needs the metadata plugin, which interkube does not have",
}


# --- the tree --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    path: tuple[str, ...]


@dataclass(frozen=True)
class Literal:
    value: str | int | bool


@dataclass(frozen=True)
class Func:
    name: str


@dataclass(frozen=True)
class Pipeline:
    commands: tuple[tuple[Operand, ...], ...]


Operand = Field | Literal | Func | Pipeline


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Action:
    pipe: Pipeline


@dataclass(frozen=True)
class If:
    branches: tuple[tuple[Pipeline, tuple[Node, ...]], ...]
    otherwise: tuple[Node, ...]


Node = Text | Action | If


# --- lexing ----------------------------------------------------------------------------------

_SPACE = " \t\r\n"
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FIELD = re.compile(r"(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
_NUMBER = re.compile(r"[+-]?(?:0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|[0-9][0-9_]*)(?:[.eEpPi][0-9a-zA-Z_+.-]*)?")
_KEYWORDS = frozenset({"if", "else", "end", "range", "with", "define", "template", "block", "break",
                       "continue", "nil", "true", "false"})


@dataclass(frozen=True)
class _Token:
    kind: str            # field, string, number, ident, pipe, open, close, dot
    text: str
    value: object = None
    adjacent: bool = False  # no space before it (a field right after ")" chains on the result)


def _unquote(body: str) -> str:
    """A Go interpreted string literal's body, escapes decoded as strconv.Unquote does."""
    out = []
    i = 0
    simple = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", '"': '"'}
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = body[i + 1:i + 2]
        if e in simple:
            out.append(simple[e])
            i += 2
        elif e == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", body[i + 2:i + 4]):
            out.append(chr(int(body[i + 2:i + 4], 16)))
            i += 4
        elif e == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", body[i + 2:i + 6]):
            out.append(chr(int(body[i + 2:i + 6], 16)))
            i += 6
        elif e == "U" and re.fullmatch(r"[0-9a-fA-F]{8}", body[i + 2:i + 10]):
            out.append(chr(int(body[i + 2:i + 10], 16)))
            i += 10
        elif re.fullmatch(r"[0-7]{3}", body[i + 1:i + 4]):
            out.append(chr(int(body[i + 1:i + 4], 8)))
            i += 4
        else:
            raise TemplateSyntaxError(f"invalid escape \\{e} in string \"{body}\"")
    return "".join(out)


def _go_int(text: str) -> int:
    """An integer constant as Go writes one (0x1f, 0o17, 017, 0b101, 1_000)."""
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    if "_" in digits and (digits.endswith("_") or "__" in digits):
        raise ValueError(text)
    if len(digits) > 1 and digits[0] == "0" and digits[1].isdigit():
        return sign * int(digits[1:].replace("_", ""), 8)
    return sign * int(digits, 0)


def _lex_action(src: str, pos: int) -> tuple[list[_Token], int, bool]:
    """The tokens of the action that starts at ``pos`` (after ``{{`` and any trim marker): the
    tokens, the offset after its ``}}``, and whether it ends with the ``-}}`` trim marker."""
    tokens: list[_Token] = []
    n = len(src)
    i = pos
    while True:
        spaced = i < n and src[i] in _SPACE
        while i < n and src[i] in _SPACE:
            i += 1
        if i >= n:
            raise TemplateSyntaxError("unclosed action")
        if spaced and src.startswith("-}}", i):
            return tokens, i + 3, True
        if src.startswith("}}", i):
            return tokens, i + 2, False
        adjacent = not spaced and bool(tokens)
        c = src[i]
        if c == "|":
            tokens.append(_Token("pipe", c, adjacent=adjacent))
            i += 1
        elif c == "(":
            tokens.append(_Token("open", c, adjacent=adjacent))
            i += 1
        elif c == ")":
            tokens.append(_Token("close", c, adjacent=adjacent))
            i += 1
        elif c == '"':
            m = re.compile(r'"((?:[^"\\\n]|\\.)*)"').match(src, i)
            if m is None:
                raise TemplateSyntaxError("unterminated quoted string")
            tokens.append(_Token("string", m.group(0), _unquote(m.group(1)), adjacent))
            i = m.end()
        elif c == "`":
            end = src.find("`", i + 1)
            if end < 0:
                raise TemplateSyntaxError("unterminated raw quoted string")
            tokens.append(_Token("string", src[i:end + 1], src[i + 1:end], adjacent))
            i = end + 1
        elif c == ".":
            m = _FIELD.match(src, i)
            if m is None:
                if i + 1 < n and src[i + 1].isdigit():
                    raise TemplateSyntaxError(f"floating-point numbers are not supported: {src[i:i + 8]!r}")
                tokens.append(_Token("dot", ".", adjacent=adjacent))
                i += 1
            else:
                tokens.append(_Token("field", m.group(0), tuple(m.group(0)[1:].split(".")), adjacent))
                i = m.end()
        elif c.isdigit() or (c in "+-" and i + 1 < n and src[i + 1].isdigit()):
            m = _NUMBER.match(src, i)
            assert m is not None
            text = m.group(0)
            try:
                value = _go_int(text)
            except ValueError:
                raise TemplateSyntaxError(f"number {text!r}: only integers are supported") from None
            tokens.append(_Token("number", text, value, adjacent))
            i = m.end()
        elif c == "$":
            raise TemplateSyntaxError("variables ($name) are not supported")
        elif c == "'":
            raise TemplateSyntaxError("character constants ('x') are not supported")
        elif c in ":=":
            raise TemplateSyntaxError("assignments are not supported")
        elif c == ",":
            raise TemplateSyntaxError("',' (range variables) is not supported")
        else:
            m = _IDENT.match(src, i)
            if m is None:
                raise TemplateSyntaxError(f"unexpected {c!r} in action")
            tokens.append(_Token("ident", m.group(0), adjacent=adjacent))
            i = m.end()


def _items(src: str) -> list[str | list[_Token]]:
    """Text pieces and the token lists of actions, in order, trim markers applied."""
    items: list[str | list[_Token]] = []
    i = 0
    n = len(src)
    trim_next = False
    while i < n or trim_next:
        start = src.find("{{", i)
        text = src[i:] if start < 0 else src[i:start]
        if trim_next:
            text = text.lstrip(_SPACE)
            trim_next = False
        if start < 0:
            if text:
                items.append(text)
            break
        j = start + 2
        if src.startswith("-", j) and j + 1 < n and src[j + 1] in _SPACE:
            text = text.rstrip(_SPACE)
            j += 2
        if text:
            items.append(text)
        if src.startswith("/*", j):  # (Go allows no space between the delimiter and a comment)
            end = src.find("*/", j + 2)
            if end < 0:
                raise TemplateSyntaxError("unclosed comment")
            k = end + 2
            if src.startswith("}}", k):
                i = k + 2
            elif src.startswith(" -}}", k):
                i = k + 4
                trim_next = True
            else:
                raise TemplateSyntaxError("comment ends before closing delimiter")
            continue
        tokens, i, trim_next = _lex_action(src, j)
        items.append(tokens)
    return items


# --- parsing ---------------------------------------------------------------------------------

#: The functions supported: name -> (least, most) arguments (None: any number).
FUNCTIONS: Final[Mapping[str, tuple[int, int | None]]] = {
    "printf": (1, None), "print": (0, None), "println": (0, None), "index": (1, None), "len": (1, 1),
    "eq": (1, None), "ne": (2, 2), "lt": (2, 2), "le": (2, 2), "gt": (2, 2), "ge": (2, 2),
    "and": (1, None), "or": (1, None), "not": (1, 1), "parseInt": (3, 3),
}
#: Go's other built-in functions: named as not supported, rather than as unknown.
_GO_BUILTINS = frozenset({"html", "js", "urlquery", "slice", "call"})


class _Parser:
    def __init__(self, src: str) -> None:
        self.items = _items(src)
        self.pos = 0
        self.depends: set[str] = set()

    def parse(self) -> tuple[Node, ...]:
        nodes, stop = self.nodes()
        if stop is not None:
            raise TemplateSyntaxError(f"unexpected {{{{{stop}}}}}")
        return nodes

    def nodes(self) -> tuple[tuple[Node, ...], str | None]:
        """Nodes up to the end or to an {{else}}/{{end}}, which is returned (its rest unread)."""
        out: list[Node] = []
        while self.pos < len(self.items):
            item = self.items[self.pos]
            self.pos += 1
            if isinstance(item, str):
                out.append(Text(item))
                continue
            if not item:
                raise TemplateSyntaxError("missing value for command")
            head = item[0]
            if head.kind == "ident" and head.text in ("else", "end"):
                self.rest = item[1:]
                return tuple(out), head.text
            if head.kind == "ident" and head.text == "if":
                out.append(self.if_(item[1:]))
            elif head.kind == "ident" and head.text in _KEYWORDS - {"true", "false", "nil"}:
                raise TemplateSyntaxError(f"{{{{{head.text}}}}} is not supported (supported: if, else, end)")
            else:
                out.append(Action(self.pipeline(item)))
        return tuple(out), None

    def if_(self, cond: list[_Token]) -> If:
        if not cond:
            raise TemplateSyntaxError("missing value for if")
        branches = []
        pipe = self.pipeline(cond)
        while True:
            body, stop = self.nodes()
            branches.append((pipe, body))
            if stop is None:
                raise TemplateSyntaxError("unexpected EOF: {{if}} without {{end}}")
            rest = self.rest
            if stop == "end":
                if rest:
                    raise TemplateSyntaxError("unexpected arguments after {{end}}")
                return If(tuple(branches), ())
            if rest and rest[0].kind == "ident" and rest[0].text == "if":
                if len(rest) == 1:
                    raise TemplateSyntaxError("missing value for if")
                pipe = self.pipeline(rest[1:])
                continue
            if rest and rest[0].kind == "ident" and rest[0].text == "with":
                raise TemplateSyntaxError("{{else with}} is not supported")
            if rest:
                raise TemplateSyntaxError("unexpected arguments after {{else}}")
            otherwise, stop = self.nodes()
            if stop != "end" or self.rest:
                raise TemplateSyntaxError("expected {{end}} after {{else}}")
            return If(tuple(branches), otherwise)

    def pipeline(self, tokens: Sequence[_Token]) -> Pipeline:
        commands: list[tuple[Operand, ...]] = []
        current: list[Operand] = []
        i = 0
        while i < len(tokens):
            t = tokens[i]
            if t.kind == "pipe":
                if not current:
                    raise TemplateSyntaxError("missing command before '|'")
                commands.append(tuple(current))
                current = []
                i += 1
                continue
            if t.kind == "open":
                depth, j = 1, i + 1
                while j < len(tokens) and depth:
                    depth += {"open": 1, "close": -1}.get(tokens[j].kind, 0)
                    j += 1
                if depth:
                    raise TemplateSyntaxError("unclosed left paren")
                inner = tokens[i + 1:j - 1]
                if not inner:
                    raise TemplateSyntaxError("missing value in parentheses")
                if j < len(tokens) and tokens[j].adjacent and tokens[j].kind == "field":
                    raise TemplateSyntaxError("fields of a parenthesised value ((...).Field) are not supported")
                current.append(self.pipeline(inner))
                i = j
                continue
            current.append(self.operand(t))
            i += 1
        if not current:
            raise TemplateSyntaxError("missing command after '|'" if commands else "missing value for command")
        commands.append(tuple(current))
        for n, command in enumerate(commands):
            self.check_command(command, piped=n > 0)
        return Pipeline(tuple(commands))

    def operand(self, t: _Token) -> Operand:
        if t.kind == "field":
            assert isinstance(t.value, tuple)
            return self.field(t.value)
        if t.kind in ("string", "number"):
            assert isinstance(t.value, (str, int))
            return Literal(t.value)
        if t.kind == "dot":
            raise TemplateSyntaxError("the whole data ('.') is not supported; name a field such as .Name")
        if t.kind == "close":
            raise TemplateSyntaxError("unexpected right paren")
        name = t.text
        if name in ("true", "false"):
            return Literal(name == "true")
        if name == "nil":
            raise TemplateSyntaxError("nil is not a command")
        if name in _KEYWORDS:
            raise TemplateSyntaxError(f"unexpected {name!r} in command")
        if name in _GO_BUILTINS:
            raise TemplateSyntaxError(f"function {name!r} is not supported "
                                      f"(supported: {', '.join(FUNCTIONS)})")
        if name not in FUNCTIONS:
            raise TemplateSyntaxError(f"function {name!r} not defined")
        return Func(name)

    def field(self, path: tuple[str, ...]) -> Field:
        top = path[0]
        if top in _NOT_SUPPORTED_FIELDS:
            raise TemplateSyntaxError(f".{top} is not supported: it {_NOT_SUPPORTED_FIELDS[top]}")
        kind = FIELDS.get(top)
        dotted = "." + ".".join(path)
        if kind is None:
            raise TemplateSyntaxError(f"can't evaluate field {top}: the data has "
                                      f"{', '.join('.' + f for f in FIELDS)}")
        if isinstance(kind, Mapping):
            if len(path) == 1:
                raise TemplateSyntaxError(f".{top} on its own is not supported; use one of "
                                          f"{', '.join(f'.{top}.{f}' for f in kind)}")
            if path[1] not in kind or len(path) > 2:
                raise TemplateSyntaxError(f"{dotted} is not supported; .{top} has "
                                          f"{', '.join(f'.{top}.{f}' for f in kind)}")
        elif kind == MAP:
            if len(path) > 2:
                raise TemplateSyntaxError(f"can't evaluate field {path[2]} in {dotted}: "
                                          f".{top}.{path[1]} is a string")
        elif len(path) > 1:
            raise TemplateSyntaxError(f"can't evaluate field {path[1]} in type {kind} (.{top})")
        dep = _DEPENDS.get(path)
        if dep is not None:
            self.depends.add(dep)
        return Field(path)

    @staticmethod
    def check_command(command: tuple[Operand, ...], piped: bool) -> None:
        first = command[0]
        for op in command[1:]:
            if isinstance(op, Func):
                raise TemplateSyntaxError(f"function {op.name!r} as an argument needs parentheses: "
                                          f"({op.name} ...)")
        if not isinstance(first, Func):
            if len(command) > 1 or piped:
                raise TemplateSyntaxError("can't give argument to non-function "
                                          f"{_describe(first)}")
            return
        least, most = FUNCTIONS[first.name]
        given = len(command) - 1 + piped
        if given < least or (most is not None and given > most):
            want = f"{least}" if least == most else f"at least {least}" if most is None else f"{least} to {most}"
            raise TemplateSyntaxError(f"wrong number of args for {first.name}: want {want} got {given}")
        fmt = command[1] if len(command) > 1 else None
        if first.name == "printf" and isinstance(fmt, Literal) and isinstance(fmt.value, str):
            check_format(fmt.value)


def _describe(op: Operand) -> str:
    if isinstance(op, Field):
        return "." + ".".join(op.path)
    if isinstance(op, Literal):
        return repr(op.value)
    return "(...)"


@dataclass(frozen=True)
class GoTemplate:
    """A parsed template: its source (what equality and metrics name it by), its tree and what
    beyond the question its output depends on (DEP_CLIENT, DEP_CASE, DEP_QUERY)."""

    source: str
    nodes: tuple[Node, ...]
    depends: frozenset[str]

    def execute(self, data: Data) -> str:
        out: list[str] = []
        _run(self.nodes, data, out)
        return "".join(out)


def parse(source: str) -> GoTemplate:
    """Parse a template; TemplateSyntaxError says what is wrong or not supported."""
    p = _Parser(source)
    nodes = p.parse()
    return GoTemplate(source, nodes, frozenset(p.depends))


# --- execution -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Data:
    """One question's template data (CoreDNS's templateData, the fields interkube supports)."""

    zone: str
    name: str
    regex: str
    match: tuple[str, ...]
    group: Mapping[str, str]
    class_: str
    type_: str
    remote: str = ""
    qname: str = ""              # the question name as the client spelt it
    qtype: int = 0
    qclass: int = 0
    id: int = 0
    rd: bool = False
    cd: bool = False

    def field(self, path: tuple[str, ...]) -> Value:
        top = path[0]
        if top == "Group":
            if len(path) == 1:
                return self.group
            return self.group.get(path[1], NO_VALUE)
        if top == "Question":
            question: dict[str, Value] = {"Name": self.qname, "Qtype": Uint16(self.qtype),
                                          "Qclass": Uint16(self.qclass)}
            return question[path[1]]
        if top == "Message":
            message: dict[str, Value] = {"Id": Uint16(self.id), "RecursionDesired": self.rd,
                                         "CheckingDisabled": self.cd}
            return message[path[1]]
        plain: dict[str, Value] = {"Zone": self.zone, "Name": self.name, "Regex": self.regex,
                                   "Match": self.match, "Class": self.class_, "Type": self.type_,
                                   "Remote": self.remote}
        return plain[top]


def _run(nodes: Iterable[Node], data: Data, out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, Text):
            out.append(node.text)
        elif isinstance(node, Action):
            out.append(go_print(_pipeline(node.pipe, data)))
        else:
            for cond, body in node.branches:
                if truth(_pipeline(cond, data)):
                    _run(body, data, out)
                    break
            else:
                _run(node.otherwise, data, out)


def _pipeline(pipe: Pipeline, data: Data) -> Value:
    value: Value | None = None
    for command in pipe.commands:
        value = _command(command, data, value)
    assert value is not None
    return value


def _operand(op: Operand, data: Data) -> Value:
    if isinstance(op, Field):
        return data.field(op.path)
    if isinstance(op, Literal):
        return op.value
    if isinstance(op, Pipeline):
        return _pipeline(op, data)
    raise TemplateExecError(f"function {op.name!r} needs arguments")  # (refused at parse time)


def _command(command: tuple[Operand, ...], data: Data, piped: Value | None) -> Value:
    first = command[0]
    if not isinstance(first, Func):
        return _operand(first, data)
    name = first.name
    if name in ("and", "or"):
        # Go evaluates these lazily, left to right, and returns the deciding argument.
        value: Value = False
        for op in command[1:]:
            value = _operand(op, data)
            if truth(value) != (name == "and"):
                return value
        if piped is not None:
            value = piped
        return value
    args = [_operand(op, data) for op in command[1:]]
    if piped is not None:
        args.append(piped)
    try:
        return _CALLS[name](args)
    except TemplateExecError as exc:
        raise TemplateExecError(f"error calling {name}: {exc}") from None


# --- functions -------------------------------------------------------------------------------


def _int_arg(v: Value, what: str) -> int:
    # Go converts an untyped integer constant to the parameter's type; a typed uint64 (from
    # parseInt) or a string is not assignable to an int parameter.
    if isinstance(v, bool) or not isinstance(v, int) or isinstance(v, (Uint64, Uint16)):
        raise TemplateExecError(f"wrong type for value; expected int; got {go_type(v)} ({what})")
    return v


def parse_uint(s: str, base: int, bit_size: int) -> Uint64:
    """Go's strconv.ParseUint, errors worded as it words them."""
    def fail(why: str) -> TemplateExecError:
        return TemplateExecError(f"strconv.ParseUint: parsing {_quote(s)}: {why}")

    if not s:
        raise fail("invalid syntax")
    prefixed = base == 0
    digits = s
    if 2 <= base <= 36:
        pass
    elif base == 0:
        base = 10
        if s[0] == "0":
            if len(s) >= 3 and s[1].lower() in "box":
                base = {"b": 2, "o": 8, "x": 16}[s[1].lower()]
                digits = s[2:]
            else:
                base = 8
                digits = s[1:]
    else:
        raise fail(f"invalid base {base}")
    if bit_size == 0:
        bit_size = 64
    elif not 0 < bit_size <= 64:
        raise fail(f"invalid bit size {bit_size}")
    if "_" in digits and not (prefixed and _underscores_ok(s)):
        raise fail("invalid syntax")
    n = 0
    for c in digits.replace("_", ""):
        if c.isdigit():
            d = ord(c) - 48
        elif "a" <= c.lower() <= "z":
            d = ord(c.lower()) - 87
        else:
            raise fail("invalid syntax")
        if d >= base:
            raise fail("invalid syntax")
        n = n * base + d
    if n >= 1 << bit_size:
        raise fail("value out of range")
    return Uint64(n)


def _underscores_ok(s: str) -> bool:
    """Go's underscoreOK: underscores only between digits, or after a base prefix."""
    saw = "^"
    i = 0
    if len(s) >= 2 and s[0] == "0" and s[1].lower() in "box":
        i = 2
        saw = "0"
    while i < len(s):
        c = s[i]
        if c.isalnum():
            saw = "0"
        elif c == "_":
            if saw != "0":
                return False
            saw = "_"
        else:
            return False
        i += 1
    return saw != "_"


def _parse_int(args: list[Value]) -> Value:
    s, base, bits = args
    if not isinstance(s, str):
        raise TemplateExecError(f"wrong type for value; expected string; got {go_type(s)}")
    return parse_uint(s, _int_arg(base, "base"), _int_arg(bits, "bitSize"))


def _index(args: list[Value]) -> Value:
    item = args[0]
    for key in args[1:]:
        if isinstance(item, tuple):
            if isinstance(key, bool) or not isinstance(key, int):
                raise TemplateExecError(f"cannot index slice/array with type {go_type(key)}")
            if not 0 <= key < len(item):
                raise TemplateExecError(f"index out of range: {key}")
            item = item[key]
        elif isinstance(item, Mapping):
            if not isinstance(key, str):
                raise TemplateExecError(f"value has type {go_type(key)}; should be string")
            item = item.get(key, "")  # index gives the zero value for a missing key, not <no value>
        elif isinstance(item, str) and not isinstance(key, bool) and isinstance(key, int):
            if not 0 <= key < len(item.encode()):
                raise TemplateExecError(f"index out of range: {key}")
            item = item.encode()[key]  # a byte (uint8)
        else:
            raise TemplateExecError(f"can't index item of type {go_type(item)}")
    return item


def _len(args: list[Value]) -> Value:
    v = args[0]
    if isinstance(v, str):
        return len(v.encode())
    if isinstance(v, (tuple, Mapping)):
        return len(v)
    raise TemplateExecError(f"len of type {go_type(v)}")


def _basic(v: Value) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, str):
        return "string"
    raise TemplateExecError(f"invalid type for comparison ({go_type(v)})")


def _eq(args: list[Value]) -> Value:
    first = args[0]
    kind = _basic(first)
    if len(args) == 1:
        raise TemplateExecError("missing argument for comparison")
    for other in args[1:]:
        if _basic(other) != kind:
            raise TemplateExecError("incompatible types for comparison")
        if other == first:
            return True
    return False


def _order(args: list[Value]) -> tuple[int | str, int | str]:
    a, b = args
    ka, kb = _basic(a), _basic(b)
    if ka == "bool" or kb == "bool":
        raise TemplateExecError("invalid type for comparison")
    if ka != kb:
        raise TemplateExecError("incompatible types for comparison")
    assert isinstance(a, (int, str)) and isinstance(b, (int, str))
    return a, b


def _lt(args: list[Value]) -> Value:
    a, b = _order(args)
    return a < b  # type: ignore[operator]  # (same kinds, checked above)


def _le(args: list[Value]) -> Value:
    a, b = _order(args)
    return a <= b  # type: ignore[operator]


def _gt(args: list[Value]) -> Value:
    a, b = _order(args)
    return a > b  # type: ignore[operator]


def _ge(args: list[Value]) -> Value:
    a, b = _order(args)
    return a >= b  # type: ignore[operator]


def _print(args: list[Value]) -> Value:
    # fmt.Sprint: a space between two operands when neither is a string.
    out = []
    for i, v in enumerate(args):
        if i and not isinstance(v, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(go_print(v))
    return "".join(out)


def _println(args: list[Value]) -> Value:
    return " ".join(go_print(v) for v in args) + "\n"


def _printf(args: list[Value]) -> Value:
    fmt = args[0]
    if not isinstance(fmt, str):
        raise TemplateExecError(f"wrong type for value; expected string; got {go_type(fmt)}")
    return sprintf(fmt, args[1:])


_CALLS: Final[Mapping[str, Callable[[list[Value]], Value]]] = {
    "printf": _printf, "print": _print, "println": _println, "index": _index, "len": _len,
    "eq": _eq, "ne": lambda a: not _eq(a), "lt": _lt, "le": _le, "gt": _gt, "ge": _ge,
    "not": lambda a: not truth(a[0]), "parseInt": _parse_int,
}


# --- printf ----------------------------------------------------------------------------------

_VERB = re.compile(r"%([-+# 0]*)(\d+)?(?:\.(\d*))?([a-zA-Z%])")
#: The verbs supported; Go's others (%e, %f, %g, %p, %U, %T, %w, and * widths) are refused.
_VERBS = frozenset("vsdqxXobOct%")


def check_format(fmt: str) -> None:
    """Refuse, when the Corefile is read, a printf format that uses what is not supported."""
    i = 0
    while True:
        i = fmt.find("%", i)
        if i < 0:
            return
        m = _VERB.match(fmt, i)
        if m is None:
            raise TemplateSyntaxError(f"printf format {fmt!r}: {fmt[i:i + 4]!r} is not supported "
                                      "(verbs: %v %s %d %q %x %X %o %O %b %c %t, flags -+# 0, width, precision)")
        if m.group(4) not in _VERBS:
            raise TemplateSyntaxError(f"printf format {fmt!r}: verb %{m.group(4)} is not supported "
                                      "(verbs: %v %s %d %q %x %X %o %O %b %c %t)")
        i = m.end()


def _quote(s: str) -> str:
    """strconv.Quote."""
    out = ['"']
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif c in "\a\b\f\n\r\t\v":
            out.append({"\a": r"\a", "\b": r"\b", "\f": r"\f", "\n": r"\n", "\r": r"\r", "\t": r"\t",
                        "\v": r"\v"}[c])
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\x{ord(c):02x}")
        elif c.isprintable():
            out.append(c)
        elif ord(c) < 0x10000:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(f"\\U{ord(c):08x}")
    out.append('"')
    return "".join(out)


@dataclass(frozen=True)
class _Spec:
    flags: str
    width: int | None
    precision: int | None
    verb: str


def _pad(s: str, spec: _Spec, zero_ok: bool = True) -> str:
    if spec.width is None or len(s) >= spec.width:
        return s
    if "-" in spec.flags:
        return s.ljust(spec.width)
    if "0" in spec.flags and zero_ok:
        return s.rjust(spec.width, "0")
    return s.rjust(spec.width)


def _format_int(v: int, spec: _Spec) -> str:
    verb = spec.verb
    if verb == "c":
        return _pad(chr(v) if 0 <= v <= 0x10FFFF else "\ufffd", spec)
    if verb == "q":
        return _pad(_quote(chr(v)).replace('"', "'") if 0 <= v <= 0x10FFFF else "'\ufffd'", spec)
    base = {"d": "d", "v": "d", "x": "x", "X": "X", "o": "o", "O": "o", "b": "b"}[verb]
    digits = format(abs(v), base)
    if spec.precision is not None:
        digits = digits.rjust(spec.precision, "0") if spec.precision else ("" if v == 0 else digits)
    prefix = ""
    if verb == "O":
        prefix = "0o"
    elif "#" in spec.flags:
        prefix = {"x": "0x", "X": "0X", "b": "0b", "o": "" if digits.startswith("0") else "0"}.get(verb, "")
    sign = "-" if v < 0 else "+" if "+" in spec.flags else " " if " " in spec.flags else ""
    body = digits
    if spec.width is not None and "0" in spec.flags and "-" not in spec.flags and spec.precision is None:
        body = digits.rjust(spec.width - len(sign) - len(prefix), "0")
    return _pad(sign + prefix + body, spec, zero_ok=False)


def _format_str(s: str, spec: _Spec) -> str:
    verb = spec.verb
    if spec.precision is not None:
        s = s[:spec.precision]
    if verb == "q":
        s = _quote(s)
    elif verb in "xX":
        sep = " " if " " in spec.flags else ""
        pre = ("0x" if verb == "x" else "0X") if "#" in spec.flags else ""
        s = sep.join(pre + format(b, "02" + verb) for b in s.encode()) if sep else \
            pre + "".join(format(b, "02" + verb) for b in s.encode())
    return _pad(s, spec)


def _bad(spec: _Spec, v: Value) -> str:
    if isinstance(v, _NoValue):
        return f"%!{spec.verb}(<nil>)"
    return f"%!{spec.verb}({go_type(v)}={go_print(v)})"


def _format(v: Value, spec: _Spec) -> str:
    verb = spec.verb
    if isinstance(v, _NoValue):
        return _pad("<nil>", spec) if verb == "v" else _bad(spec, v)
    if isinstance(v, bool):
        return _pad(go_print(v), spec) if verb in "vt" else _bad(spec, v)
    if isinstance(v, int):
        return _format_int(v, spec) if verb in "vdxXoObcq" else _bad(spec, v)
    if isinstance(v, str):
        return _format_str(v, spec) if verb in "vsqxX" else _bad(spec, v)
    if isinstance(v, tuple):
        return "[" + " ".join(_format(item, spec) for item in v) + "]"
    return "map[" + " ".join(f"{_format(k, spec)}:{_format(v[k], spec)}" for k in sorted(v)) + "]"


def sprintf(fmt: str, args: Sequence[Value]) -> str:
    """Go's fmt.Sprintf for the verbs check_format allows; misuse is written inline as Go writes
    it (%!d(string=x), %!s(MISSING), %!(EXTRA int=1))."""
    out: list[str] = []
    used = 0
    pos = 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[pos:m.start()])
        pos = m.end()
        flags, width, precision, verb = m.groups()
        if verb == "%":
            out.append("%")
            continue
        spec = _Spec(flags, int(width) if width else None,
                     None if precision is None else int(precision or 0), verb)
        if used >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        out.append(_format(args[used], spec))
        used += 1
    out.append(fmt[pos:])
    if used < len(args):
        extra = ", ".join(f"{go_type(v)}={go_print(v)}" for v in args[used:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


__all__ = ["DEP_CASE", "DEP_CLIENT", "DEP_QUERY", "FIELDS", "FUNCTIONS", "NO_VALUE", "Data", "GoTemplate",
           "TemplateExecError", "TemplateSyntaxError", "Uint16", "Uint64", "check_format", "go_print", "parse",
           "parse_uint", "sprintf"]

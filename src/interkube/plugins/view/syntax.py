"""The syntax of a view's expression: expr-lang's tokens and precedences, read into a tree.

The grammar is expr-lang's (the language CoreDNS compiles a view's ``expr`` with). What this
module parses but the subset does not evaluate is refused here by name (``let``, ``if``, the
ternary, pipes, maps, member access, indexing, byte strings) or by the type checker in
interkube.plugins.view.expression.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any, Final

from interkube.errors import ConfigError


class ExpressionError(ConfigError):
    """An expression that cannot be compiled; ``column`` is where (1-based, in characters)."""

    def __init__(self, message: str, column: int) -> None:
        self.column = column
        super().__init__(f"{message} (column {column})")


# --- tokens ----------------------------------------------------------------------------------

NUMBER, STRING, IDENT, OPERATOR, BRACKET, EOF = "number", "string", "identifier", "operator", "bracket", "end"

#: Words that are operators, not names.
_WORD_OPERATORS = frozenset({"in", "or", "and", "matches", "contains", "startsWith", "endsWith", "let",
                             "if", "else", "not"})
#: Operators that may follow `not` (a `not in` b).
_NEGATABLE = frozenset({"in", "matches", "contains", "startsWith", "endsWith"})
_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


@dataclass(frozen=True, slots=True)
class Tok:
    kind: str
    value: str
    column: int

    def shown(self) -> str:
        return "end of expression" if self.kind == EOF else f"{self.kind} {self.value!r}"


def _alnum(ch: str) -> bool:
    return ch == "_" or ch == "$" or ch.isalpha() or unicodedata.category(ch) == "Nd"


def tokenize(text: str) -> list[Tok]:
    """expr-lang's tokens of ``text`` (comments dropped); ExpressionError where it cannot."""
    toks: list[Tok] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        start = i
        col = i + 1
        if ch.isspace():
            i += 1
        elif ch in "'\"":
            value, i = _quoted(text, i)
            toks.append(Tok(STRING, value, col))
        elif ch == "`":
            value, i = _raw(text, i)
            toks.append(Tok(STRING, value, col))
        elif ch in "bB" and i + 1 < n and text[i + 1] in "'\"":
            raise ExpressionError("byte strings (b'...') are not supported", col)
        elif "0" <= ch <= "9" or (ch == "." and "0" <= text[i + 1:i + 2] <= "9" and i + 1 < n):
            i = _number_end(text, i)
            toks.append(Tok(NUMBER, text[start:i], col))
        elif ch == "/" and text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif ch == "/" and text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise ExpressionError("unclosed comment", n)
            i = end + 2
        elif ch == "?":
            i += 2 if text[i + 1:i + 2] in (".", "?") and i + 1 < n else 1
            toks.append(Tok(OPERATOR, text[start:i], col))
        elif ch in "|:.":
            i += 2 if text[i + 1:i + 2] == ch else 1
            toks.append(Tok(OPERATOR, text[start:i], col))
        elif ch in "([{)]}":
            i += 1
            toks.append(Tok(BRACKET, ch, col))
        elif ch in ",;%+-^/#":
            i += 1
            toks.append(Tok(OPERATOR, ch, col))
        elif ch in "&!=*<>":
            i += 2 if text[i + 1:i + 2] in ("&", "=", "*") and i + 1 < n else 1
            toks.append(Tok(OPERATOR, text[start:i], col))
        elif _alnum(ch):
            while i < n and _alnum(text[i]):
                i += 1
            word = text[start:i]
            toks.append(Tok(OPERATOR if word in _WORD_OPERATORS else IDENT, word, col))
        else:
            raise ExpressionError(f"unrecognized character {ch!r}", col)
    toks.append(Tok(EOF, "", n + 1))
    return toks


def _quoted(text: str, i: int) -> tuple[str, int]:
    """The value of the string literal starting at ``i`` and the index past it."""
    quote = text[i]
    out: list[str] = []
    j = i + 1
    n = len(text)
    while True:
        if j >= n or text[j] == "\n":
            raise ExpressionError("literal not terminated", i + 1)
        ch = text[j]
        if ch == quote:
            return "".join(out), j + 1
        if ch != "\\":
            out.append(ch)
            j += 1
            continue
        value, j = _escape(text, j, quote)
        out.append(value)


def _escape(text: str, j: int, quote: str) -> tuple[str, int]:
    """The character of the escape sequence at ``text[j]`` (a backslash) and the index past it."""
    col = j + 1
    c = text[j + 1:j + 2]
    if c in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[c], j + 2
    if c == quote:
        return quote, j + 2
    if c in ("0", "1", "2", "3"):
        digits = text[j + 1:j + 4]
        if len(digits) == 3 and all(d in "01234567" for d in digits):
            return chr(int(digits, 8)), j + 4
    elif c in ("x", "u", "U"):
        if c == "u" and text[j + 2:j + 3] == "{":
            end = text.find("}", j + 3)
            digits = text[j + 3:end] if end > 0 else ""
            if 0 < len(digits) <= 6 and _is_hex(digits) and int(digits, 16) <= 0x10FFFF:
                return chr(int(digits, 16)), end + 1
        else:
            width = {"x": 2, "u": 4, "U": 8}[c]
            digits = text[j + 2:j + 2 + width]
            if len(digits) == width and _is_hex(digits) and int(digits, 16) <= 0x10FFFF:
                return chr(int(digits, 16)), j + 2 + width
    raise ExpressionError("invalid char escape", col)


def _is_hex(digits: str) -> bool:
    return all(d in "0123456789abcdefABCDEF" for d in digits)


def _raw(text: str, i: int) -> tuple[str, int]:
    """A back-quoted string: no escapes but a doubled back quote."""
    out: list[str] = []
    j = i + 1
    while True:
        end = text.find("`", j)
        if end < 0:
            raise ExpressionError("literal not terminated", i + 1)
        out.append(text[j:end])
        if text[end + 1:end + 2] == "`":
            out.append("`")
            j = end + 2
            continue
        return "".join(out), end + 1


def _number_end(text: str, i: int) -> int:
    """The index past the number literal at ``i`` (expr-lang's scan: a base prefix, digits with
    underscores, a fraction, an exponent; never directly followed by a letter)."""
    n = len(text)
    digits = "0123456789_"
    if text[i] == "0" and text[i + 1:i + 2] in ("x", "X", "o", "O", "b", "B"):
        digits = {"x": "0123456789abcdefABCDEF_", "o": "01234567_", "b": "01_"}[text[i + 1].lower()]
        i += 2
    while i < n and text[i] in digits:
        i += 1
    if i < n and text[i] == "." and text[i + 1:i + 2] != ".":
        i += 1
        while i < n and text[i] in digits:
            i += 1
    if i < n and text[i] in "eE":
        i += 1
        if i < n and text[i] in "+-":
            i += 1
        while i < n and text[i] in digits:
            i += 1
    if i < n and _alnum(text[i]):
        raise ExpressionError(f"bad number syntax: {text[:i + 1]!r}", i + 1)
    return i


# --- syntax tree -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Literal:
    value: Any          # int, float, str, bool or None
    column: int


@dataclass(frozen=True, slots=True)
class ListOf:
    items: tuple[Node, ...]
    column: int


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Node, ...]
    column: int


@dataclass(frozen=True, slots=True)
class Name:
    name: str
    column: int


@dataclass(frozen=True, slots=True)
class Unary:
    op: str
    operand: Node
    column: int


@dataclass(frozen=True, slots=True)
class Binary:
    op: str
    left: Node
    right: Node
    column: int


Node = Literal | ListOf | Call | Name | Unary | Binary

#: expr-lang's precedences: the unary operators, then the binary ones (all left-associative
#: but ** and ^). `not` binds tighter than `==`: `not a == b` is `(not a) == b`.
UNARY: Final = {"not": 50, "!": 50, "-": 90, "+": 90}
BINARY: Final = {"or": 10, "||": 10, "and": 15, "&&": 15,
                 "==": 20, "!=": 20, "<": 20, ">": 20, ">=": 20, "<=": 20,
                 "in": 20, "matches": 20, "contains": 20, "startsWith": 20, "endsWith": 20,
                 "..": 25, "+": 30, "-": 30, "*": 60, "/": 60, "%": 60, "**": 100, "^": 100}
_RIGHT: Final = frozenset({"**", "^"})
ORDERING: Final = frozenset({"<", ">", "<=", ">="})


class Parser:
    """expr-lang's precedence-climbing parser over :func:`tokenize`'s tokens."""

    def __init__(self, text: str) -> None:
        self.toks = tokenize(text)
        self.pos = 0

    @property
    def cur(self) -> Tok:
        return self.toks[self.pos]

    def advance(self) -> Tok:
        tok = self.toks[self.pos]
        if tok.kind != EOF:
            self.pos += 1
        return tok

    def expect(self, kind: str, value: str) -> Tok:
        tok = self.cur
        if tok.kind != kind or tok.value != value:
            raise ExpressionError(f"unexpected {tok.shown()}, expected {value!r}", tok.column)
        return self.advance()

    def parse(self) -> Node:
        if self.cur.kind == EOF:
            raise ExpressionError("empty expression", 1)
        node = self.expression(0)
        tok = self.cur
        if tok.kind == OPERATOR and tok.value == ";":
            raise _unsupported("sequences (;)", tok)
        if tok.kind != EOF:
            raise ExpressionError(f"unexpected {tok.shown()}", tok.column)
        return node

    def expression(self, precedence: int) -> Node:
        tok = self.cur
        if tok.kind == OPERATOR and tok.value in ("let", "if"):
            raise _unsupported(f"`{tok.value}`", tok)
        left = self.primary()
        while True:
            tok = self.cur
            if tok.kind != OPERATOR:
                break
            negate = tok.value == "not"
            op = tok.value
            if negate:
                after = self.toks[self.pos + 1]
                if after.kind != OPERATOR or after.value not in _NEGATABLE:
                    raise ExpressionError(f"unexpected {after.shown()} after 'not'", after.column)
                op = after.value
            prec = BINARY.get(op)
            if op in ("|", "??"):
                raise _unsupported(f"the {op} operator", tok)
            if prec is None or prec < precedence:
                break
            if negate:
                self.advance()
            self.advance()
            if op in ORDERING:
                left = self.ordering(left, tok, prec)
                continue
            right = self.expression(prec if op in _RIGHT else prec + 1)
            left = Binary(op, left, right, tok.column)
            if negate:
                left = Unary("not", left, tok.column)
        if precedence == 0 and self.cur.kind == OPERATOR and self.cur.value == "?":
            raise _unsupported("the ?: conditional", self.cur)
        return left

    def ordering(self, left: Node, tok: Tok, prec: int) -> Node:
        """``a < b <= c`` is ``a < b and b <= c``, as expr-lang reads it."""
        root: Node | None = None
        while True:
            right = self.expression(prec + 1)
            node = Binary(tok.value, left, right, tok.column)
            root = node if root is None else Binary("&&", root, node, tok.column)
            left = right
            tok = self.cur
            if tok.kind != OPERATOR or tok.value not in ORDERING:
                return root
            self.advance()

    def primary(self) -> Node:
        tok = self.cur
        if tok.kind == OPERATOR and tok.value in UNARY:
            self.advance()
            operand = self.expression(UNARY[tok.value])
            return self.postfix(Unary(tok.value, operand, tok.column))
        if tok.kind == BRACKET and tok.value == "(":
            self.advance()
            inner = self.expression(0)
            if self.cur.kind == OPERATOR and self.cur.value == ";":
                raise _unsupported("sequences (;)", self.cur)
            self.expect(BRACKET, ")")
            return self.postfix(inner)
        if tok.kind == OPERATOR and tok.value in ("#", ".", "::"):
            raise _unsupported(f"{tok.value!r}", tok)
        return self.postfix(self.secondary())

    def secondary(self) -> Node:
        tok = self.advance()
        if tok.kind == IDENT:
            if tok.value in ("true", "false"):
                return Literal(tok.value == "true", tok.column)
            if tok.value == "nil":
                return Literal(None, tok.column)
            if self.cur.kind == BRACKET and self.cur.value == "(":
                if tok.value in BUILTINS:
                    # (before its arguments: some take expr-lang's closures, {# > 1})
                    raise ExpressionError(f"the function {tok.value}() is not supported", tok.column)
                return Call(tok.value, self.arguments(), tok.column)
            return Name(tok.value, tok.column)
        if tok.kind == NUMBER:
            return Literal(_number(tok), tok.column)
        if tok.kind == STRING:
            return Literal(tok.value, tok.column)
        if tok.kind == BRACKET and tok.value == "[":
            return ListOf(self.sequence("]"), tok.column)
        if tok.kind == BRACKET and tok.value == "{":
            raise _unsupported("maps ({...})", tok)
        raise ExpressionError(f"unexpected {tok.shown()}", tok.column)

    def arguments(self) -> tuple[Node, ...]:
        self.expect(BRACKET, "(")
        return self.sequence(")")

    def sequence(self, close: str) -> tuple[Node, ...]:
        """Expressions separated by commas (one may end the list) up to ``close``."""
        nodes: list[Node] = []
        while not (self.cur.kind == BRACKET and self.cur.value == close):
            if nodes:
                self.expect(OPERATOR, ",")
                if self.cur.kind == BRACKET and self.cur.value == close:
                    break
            nodes.append(self.expression(0))
        self.expect(BRACKET, close)
        return tuple(nodes)

    def postfix(self, node: Node) -> Node:
        tok = self.cur
        if tok.kind == OPERATOR and tok.value in (".", "?."):
            raise _unsupported("member access (.field)", tok)
        if tok.kind == BRACKET and tok.value == "[":
            raise _unsupported("indexing and slicing ([...])", tok)
        return node


def _unsupported(what: str, tok: Tok) -> ExpressionError:
    return ExpressionError(f"{what} is not supported", tok.column)


def _number(tok: Tok) -> int | float:
    text = tok.value.replace("_", "")
    low = text.lower()
    try:
        if low.startswith(("0x", "0o", "0b")):
            value: int | float = int(text, 0)
        elif "." in low or "e" in low:
            value = float(text)
        else:
            value = int(text, 10)
    except ValueError:
        raise ExpressionError(f"invalid number literal {tok.value!r}", tok.column) from None
    if isinstance(value, int) and value > 2 ** 63 - 1:
        raise ExpressionError("integer literal is too large", tok.column)
    return value


#: expr-lang's builtin functions (CoreDNS turns off only `type`): refused as not supported
#: rather than as unknown names.
BUILTINS: Final = frozenset({
    "all", "none", "any", "one", "filter", "map", "count", "sum", "find", "findIndex", "findLast",
    "findLastIndex", "groupBy", "sortBy", "reduce", "len", "abs", "ceil", "floor", "round", "int", "float",
    "string", "trim", "trimPrefix", "trimSuffix", "upper", "lower", "split", "splitAfter", "replace",
    "repeat", "indexOf", "lastIndexOf", "hasPrefix", "hasSuffix", "max", "min", "mean", "median",
    "toJSON", "fromJSON", "toBase64", "fromBase64", "now", "duration", "date", "timezone", "first",
    "last", "get", "keys", "values", "toPairs", "fromPairs", "sort", "concat", "flatten", "uniq", "join",
    "reverse", "bitand", "bitor", "bitxor", "bitnand", "bitnot", "bitshl", "bitshr", "bitushr"})


__all__ = ["BINARY", "BUILTINS", "ORDERING", "UNARY", "Binary", "Call", "ExpressionError", "ListOf", "Literal",
           "Name", "Node", "Parser", "Tok", "tokenize"]

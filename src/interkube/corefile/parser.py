"""Corefile parser: tokens -> server blocks of directives, with imports, snippets and {$ENV}.

The grammar is CoreDNS's (inherited from Caddy v1)::

    (snippet) { tokens }                      defines a snippet, usable by `import snippet`
    import PATTERN|SNIPPET                    at the start of any line, pastes tokens
    KEY [KEY...] {                            server keys, separated by space or comma
        directive arg arg {                   one directive per line; a `{` that ends the
            option arg                        line opens a block of options, which may nest
        }
    }

A file with a single server block may leave out its braces. Parsing does no I/O beyond reading
the Corefile and the files it imports; it never looks at what a directive means.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from collections.abc import Mapping
from typing import NamedTuple

from interkube.corefile.lexer import Token, decode, tokenize
from interkube.errors import ConfigError

log = logging.getLogger("interkube.corefile")

#: How deep imports may nest before we call it a cycle (Caddy uses the same bound).
MAX_IMPORT_DEPTH = 10

_ENV_RE = re.compile(r"\{\$([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}|\{%([A-Za-z_][A-Za-z0-9_]*)%\}")
_SNIPPET_RE = re.compile(r"^\(([^()\s]+)\)$")


class Directive(NamedTuple):
    """One line of a server block (or of an option block) and the block it opens.

    A NamedTuple, not a dataclass: a dataclass is a few exec'd functions at import, a millisecond
    of every start (issue 18)."""

    token: Token
    args: tuple[Token, ...] = ()
    block: tuple[Directive, ...] = ()
    has_block: bool = False

    @property
    def name(self) -> str:
        return self.token.text

    @property
    def where(self) -> str:
        return self.token.where

    def error(self, message: str) -> ConfigError:
        return self.token.error(f"{self.name}: {message}")


class ServerBlock(NamedTuple):
    """A server block as written: its keys (unparsed) and its directives (a NamedTuple, as
    Directive)."""

    keys: tuple[Token, ...]
    directives: tuple[Directive, ...]

    @property
    def token(self) -> Token:
        return self.keys[0]


class _Expander:
    def __init__(self, env: Mapping[str, str], warn: bool = True) -> None:
        self.env = env
        #: Log warnings (an import glob that matches nothing); off when only a digest is wanted.
        self.warn = warn
        self.snippets: dict[str, list[Token]] = {}

    def substitute(self, tok: Token) -> Token:
        if "{" not in tok.text:
            return tok

        def repl(m: re.Match[str]) -> str:
            if m.group(1):
                value = self.env.get(m.group(1))
                return value if value is not None else (m.group(2) or "")
            return self.env.get(m.group(3), "")

        text = _ENV_RE.sub(repl, tok.text)
        return tok if text == tok.text else Token(text, tok.file, tok.line, tok.quoted)

    def expand(self, tokens: list[Token], depth: int, chain: tuple[str, ...]) -> list[Token]:
        """Resolve snippets and imports; returns the flat token stream."""
        out: list[Token] = []
        i = 0
        n = len(tokens)
        brace_depth = 0
        while i < n:
            tok = tokens[i]
            at_line_start = i == 0 or not _same_line(tokens[i - 1], tok)
            if brace_depth == 0 and at_line_start and not tok.quoted and (snippet := _SNIPPET_RE.match(tok.text)) \
                    and i + 1 < n and tokens[i + 1].text == "{" and not tokens[i + 1].quoted:
                name = snippet.group(1)
                body, i = _take_braced(tokens, i + 1)
                self.snippets[name] = body
                continue
            if at_line_start and tok.text == "import" and not tok.quoted:
                args = []
                j = i + 1
                while j < n and _same_line(tokens[j - 1], tokens[j]):
                    args.append(tokens[j])
                    j += 1
                if len(args) != 1:
                    raise tok.error("import: expected exactly one argument (a snippet name or a file pattern)")
                out.extend(self.resolve_import(args[0], depth, chain))
                i = j
                continue
            if tok.text == "{" and not tok.quoted:
                brace_depth += 1
            elif tok.text == "}" and not tok.quoted:
                brace_depth -= 1
            out.append(tok)
            i += 1
        return out

    def resolve_import(self, arg: Token, depth: int, chain: tuple[str, ...]) -> list[Token]:
        if depth >= MAX_IMPORT_DEPTH:
            raise arg.error(f"import: nested more than {MAX_IMPORT_DEPTH} deep (an import cycle?): "
                            + " -> ".join((*chain, arg.text)))
        name = arg.text
        if name in self.snippets:
            if "snippet:" + name in chain:
                raise arg.error(f"import: snippet {name!r} imports itself: " + " -> ".join((*chain, name)))
            return self.expand(list(self.snippets[name]), depth + 1, (*chain, "snippet:" + name))
        base = os.path.dirname(os.path.abspath(arg.file)) if os.path.exists(arg.file) else os.getcwd()
        pattern = name if os.path.isabs(name) else os.path.join(base, name)
        if glob.has_magic(pattern):
            paths = sorted(glob.glob(pattern))
            if not paths and self.warn:
                # Allowed, as in CoreDNS (an optional conf.d), but said with CoreDNS's words: a
                # typo in the pattern would otherwise drop a whole block without a trace.
                log.warning("%s: No files matching import glob pattern: %s", arg.where, name)
        else:
            if not os.path.exists(pattern):
                raise arg.error(f"import: no snippet named {name!r} and no file {pattern}")
            paths = [pattern]
        result: list[Token] = []
        for path in paths:
            real = os.path.realpath(path)
            if real in chain:
                raise arg.error("import: cycle: " + " -> ".join((*chain, real)))
            result.extend(self.expand(self.load(path, arg), depth + 1, (*chain, real)))
        return result

    def load(self, path: str, cause: Token | None) -> list[Token]:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            if cause is not None:
                raise cause.error(f"import: cannot read {path}: {exc.strerror}") from exc
            raise ConfigError(f"cannot read Corefile: {exc.strerror}", path) from exc
        return [self.substitute(t) for t in tokenize(decode(data, path), path)]


def _same_line(a: Token, b: Token) -> bool:
    """True when token b continues the line token a is on (quoted tokens may span lines)."""
    return a.file == b.file and a.line + a.text.count("\n") * a.quoted == b.line


def _take_braced(tokens: list[Token], open_idx: int) -> tuple[list[Token], int]:
    """The tokens between the `{` at open_idx and its matching `}`; index after the `}`."""
    depth = 0
    for j in range(open_idx, len(tokens)):
        t = tokens[j]
        if t.quoted:
            continue
        if t.text == "{":
            depth += 1
        elif t.text == "}":
            depth -= 1
            if depth == 0:
                return tokens[open_idx + 1:j], j + 1
    raise tokens[open_idx].error("unbalanced braces: '{' is never closed")


def _is(tok: Token, text: str) -> bool:
    return tok.text == text and not tok.quoted


class _BlockParser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.i = 0

    def server_blocks(self) -> list[ServerBlock]:
        blocks: list[ServerBlock] = []
        toks = self.tokens
        while self.i < len(toks):
            keys = self.keys()
            if self.i < len(toks) and _is(toks[self.i], "{"):
                self.i += 1
                directives = self.directives(closing=toks[self.i - 1])
            else:
                # Braces may be left out only when this is the one and only server block.
                if blocks:
                    raise keys[-1].error("expected '{' after the server keys")
                directives = self.directives(closing=None)
            blocks.append(ServerBlock(tuple(keys), tuple(directives)))
        return blocks

    def keys(self) -> list[Token]:
        toks = self.tokens
        first = toks[self.i]
        if _is(first, "}"):
            raise first.error("unexpected '}': no block is open")
        if _is(first, "{"):
            raise first.error("expected server keys (zones) before '{'")
        keys: list[Token] = []
        prev: Token | None = None
        while self.i < len(toks):
            tok = toks[self.i]
            if _is(tok, "{"):
                break
            # Keys continue on the next line only after a trailing comma.
            if prev is not None and not _same_line(prev, tok) and not prev.text.endswith(","):
                break
            self.i += 1
            prev = tok
            for part in tok.text.split(","):
                if part:
                    keys.append(Token(part, tok.file, tok.line, tok.quoted))
        if not keys:
            raise first.error("expected server keys (zones)")
        return keys

    def directives(self, closing: Token | None) -> list[Directive]:
        toks = self.tokens
        out: list[Directive] = []
        while self.i < len(toks):
            tok = toks[self.i]
            if _is(tok, "}"):
                if closing is None:
                    raise tok.error("unexpected '}': no block is open")
                self.i += 1
                return out
            if _is(tok, "{"):
                raise tok.error("unexpected '{': a block must open at the end of a directive's line")
            out.append(self.directive())
        if closing is not None:
            raise closing.error("unbalanced braces: '{' is never closed")
        return out

    def directive(self) -> Directive:
        toks = self.tokens
        name = toks[self.i]
        self.i += 1
        args: list[Token] = []
        while self.i < len(toks) and _same_line(toks[self.i - 1], toks[self.i]):
            tok = toks[self.i]
            if _is(tok, "}"):
                break  # closes the enclosing block, e.g. `{ force_tcp }` on one line
            if _is(tok, "{"):
                self.i += 1
                block = self.directives(closing=tok)
                return Directive(name, tuple(args), tuple(block), True)
            args.append(tok)
            self.i += 1
        return Directive(name, tuple(args))


def parse_text(text: str, file: str = "Corefile", env: Mapping[str, str] | None = None, *,
               warn: bool = True) -> list[ServerBlock]:
    """Parse Corefile text; ``file`` names it in errors and anchors relative imports.

    ``warn`` False keeps warnings out of the log (for a digest computed on every reload check).
    """
    expander = _Expander(os.environ if env is None else env, warn)
    tokens = [expander.substitute(t) for t in tokenize(text, file)]
    chain = (os.path.realpath(file),) if os.path.exists(file) else ()
    flat = expander.expand(tokens, 0, chain)
    if not flat:
        raise ConfigError("no server blocks: the Corefile is empty", file, 1)
    return _BlockParser(flat).server_blocks()


def parse_file(path: str, env: Mapping[str, str] | None = None, *, warn: bool = True) -> list[ServerBlock]:
    """Read and parse a Corefile from disk (``warn`` as for :func:`parse_text`)."""
    expander = _Expander(os.environ if env is None else env, warn)
    tokens = expander.load(path, None)
    flat = expander.expand(tokens, 0, (os.path.realpath(path),))
    if not flat:
        raise ConfigError("no server blocks: the Corefile is empty", path, 1)
    return _BlockParser(flat).server_blocks()

"""Corefile lexer: text -> tokens, each knowing its file and line.

Follows the Caddyfile rules CoreDNS inherited: tokens are separated by whitespace; a newline ends
a directive's arguments (so each token remembers its line); ``#`` starts a comment only where a
token could start; ``"..."`` quotes a token that may hold spaces and newlines, with ``\\"`` for a
literal quote; braces are tokens only when they stand alone.
"""

from __future__ import annotations

from typing import NamedTuple

from interkube.errors import ConfigError


class Token(NamedTuple):
    """One word of a Corefile and where it was written.

    A NamedTuple, not a dataclass: a dataclass is a few exec'd functions at import, a millisecond
    of every start (issue 18)."""

    text: str
    file: str
    line: int
    quoted: bool = False

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def error(self, message: str) -> ConfigError:
        """A ConfigError pointing at this token."""
        return ConfigError(message, self.file, self.line)


def decode(data: bytes, file: str) -> str:
    """A Corefile's bytes as text.

    Raises ConfigError naming the line of the first byte that is not UTF-8, so that a stray
    Latin-1 character pasted into a large file can be found.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        bad = data[exc.start:exc.end]
        shown = " ".join(f"0x{b:02x}" for b in bad)
        raise ConfigError(f"not UTF-8 text: {exc.reason} ({shown})", file, line) from None


def tokenize(text: str, file: str) -> list[Token]:
    """Split Corefile text into tokens.

    Raises ConfigError for an unterminated quote, naming the line where the quote opened.
    """
    tokens: list[Token] = []
    line = 1
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
            i += 1
            continue
        if ch.isspace():
            i += 1
            continue
        if ch == "#":
            while i < n and text[i] != "\n":
                i += 1
            continue
        start_line = line
        if ch == '"':
            i += 1
            buf: list[str] = []
            while True:
                if i >= n:
                    raise ConfigError("unterminated quoted string", file, start_line)
                c = text[i]
                if c == "\\" and i + 1 < n and text[i + 1] == '"':
                    buf.append('"')
                    i += 2
                    continue
                if c == '"':
                    i += 1
                    break
                if c == "\n":
                    line += 1
                buf.append(c)
                i += 1
            tokens.append(Token("".join(buf), file, start_line, quoted=True))
            continue
        start = i
        # An unquoted token runs to the next whitespace. A quote inside a word is literal, as in
        # Caddy, except that `\"` still yields a quote.
        buf2: list[str] = []
        while i < n and not text[i].isspace():
            if text[i] == "\\" and i + 1 < n and text[i + 1] == '"':
                buf2.append('"')
                i += 2
                continue
            buf2.append(text[i])
            i += 1
        word = "".join(buf2) if buf2 else text[start:i]
        tokens.append(Token(word, file, start_line))
    return tokens

"""Go regular expressions (RE2 syntax, as CoreDNS's plugins take them: template's `match`,
rewrite's `regex`) run by Python's re. No I/O.

For what names look like, the two languages agree on almost everything; the translation handles
where they differ in spelling, and refuses where they differ in meaning, so that a pattern never
matches other names here than in CoreDNS:

* ``(?<name>...)`` (Go 1.22) becomes Python's ``(?P<name>...)``; ``\\z`` (end of text) becomes
  ``\\Z``; ASCII classes ``[[:alpha:]]`` are spelt out; ``\\Q...\\E`` becomes the escaped literal;
  a ``]`` first in a class is a literal in both, and written so.
* What Go refuses, Python's re would accept: back-references (``\\1``), look-around
  (``(?=``, ``(?<=``, ...), atomic groups, possessive repeats. Refused, as CoreDNS refuses them.
* What Go accepts and Python cannot say alike: Unicode classes (``\\pL``), the ungreedy flag
  ``(?U)``, negated ASCII classes ``[[:^alpha:]]`` and flags set in the middle of a pattern
  (``a(?i)b``). Refused as not supported.

Patterns are compiled with re.ASCII, as Go's ``\\d``, ``\\w``, ``\\s`` and ``\\b`` are ASCII.
"""

from __future__ import annotations

import re
import warnings

#: CoreDNS's limit on a pattern's length (against memory use while compiling).
MAX_PATTERN_LENGTH = 10_000

_POSIX = {
    "alnum": "0-9A-Za-z", "alpha": "A-Za-z", "ascii": "\\x00-\\x7f", "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f", "digit": "0-9", "graph": "!-~", "lower": "a-z", "print": " -~",
    "punct": "!-/:-@\\[-`{-~", "space": "\\t\\n\\v\\f\\r ", "upper": "A-Z", "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}
_FLAGS = re.compile(r"\(\?([imsU-]+)([):])")


class PatternError(Exception):
    """A pattern Go would refuse, or one this translation does not support."""


def translate(pattern: str) -> str:
    """The Python spelling of a Go pattern; PatternError where the two cannot agree."""
    out: list[str] = []
    i = 0
    n = len(pattern)
    in_class = False
    while i < n:
        c = pattern[i]
        if c == "\\":
            e = pattern[i + 1:i + 2]
            if not e:
                raise PatternError("trailing backslash at end of expression")
            if e.isdigit() and e != "0":
                raise PatternError(f"invalid escape sequence: \\{e} (Go has no back-references)")
            if e in "pP":
                raise PatternError(f"Unicode classes (\\{e}...) are not supported")
            if e == "Q" and not in_class:  # \Q...\E: everything between is literal
                end = pattern.find("\\E", i + 2)
                out.append(re.escape(pattern[i + 2:] if end < 0 else pattern[i + 2:end]))
                i = n if end < 0 else end + 2
                continue
            if e == "Z":
                raise PatternError("invalid escape sequence: \\Z (Go writes the end of text \\z)")
            out.append("\\Z" if e == "z" else pattern[i:i + 2])
            i += 2
            continue
        if in_class:
            if c == "[" and pattern.startswith("[:", i):
                end = pattern.find(":]", i + 2)
                name = pattern[i + 2:end] if end > 0 else ""
                if name.startswith("^"):
                    raise PatternError(f"negated ASCII classes ([:{name}:]) are not supported")
                if name not in _POSIX:
                    raise PatternError(f"invalid character class range: [:{name}:]")
                out.append(_POSIX[name])
                i = end + 2
                continue
            if c == "[":
                out.append("\\[")  # a literal in Go; Python warns of nested sets
            elif c == "]":
                in_class = False
                out.append(c)
            else:
                out.append(c)
            i += 1
            continue
        if c == "[":
            in_class = True
            out.append(c)
            i += 1
            if pattern.startswith("^", i):
                out.append("^")
                i += 1
            if pattern.startswith("]", i):  # a "]" first in a class is a literal
                out.append("\\]")
                i += 1
            continue
        if pattern.startswith("(?", i):
            i = _group(pattern, i, out)
            continue
        if c in "*+?" and pattern.startswith(("+", "*"), i + 1):
            raise PatternError(f"invalid nested repetition operator: {pattern[i:i + 2]}")
        out.append(c)
        i += 1
    if in_class:
        raise PatternError("missing closing ]")
    return "".join(out)


def _group(pattern: str, i: int, out: list[str]) -> int:
    """Translate the ``(?`` construct at ``i``; returns the offset after what it consumed."""
    rest = pattern[i + 2:i + 5]
    if rest.startswith("P<"):
        out.append("(?P<")
        return i + 4
    if rest.startswith(("=", "!", "<=", "<!")):
        raise PatternError("look-around assertions are not supported by Go's regexp")
    if rest.startswith(">"):
        raise PatternError("atomic groups are not supported by Go's regexp")
    if rest.startswith("<"):
        out.append("(?P<")
        return i + 3
    if rest.startswith(":"):
        out.append("(?:")
        return i + 3
    m = _FLAGS.match(pattern, i)
    if m is None:
        raise PatternError(f"invalid or unsupported Perl syntax: {pattern[i:i + 4]!r}")
    flags, end = m.group(1), m.group(2)
    if "U" in flags:
        raise PatternError("the ungreedy flag (?U) is not supported")
    if end == ")" and i != 0:
        raise PatternError(f"flags set in the middle of a pattern ({m.group(0)}) are not supported; "
                           f"put them first or scope them: (?{flags}:...)")
    out.append(m.group(0))
    return m.end()


def compile_go(pattern: str) -> re.Pattern[str]:
    """Compile a Go pattern for re.search (Go's MatchString finds a match anywhere)."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise PatternError(f"regex pattern too long: {len(pattern)} > {MAX_PATTERN_LENGTH}")
    text = translate(pattern)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a FutureWarning means Python reads it another way
        try:
            return re.compile(text, re.ASCII)
        except (re.error, Warning) as exc:
            raise PatternError(str(exc)) from None


__all__ = ["MAX_PATTERN_LENGTH", "PatternError", "compile_go", "translate"]

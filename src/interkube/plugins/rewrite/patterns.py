"""Names as rewrite rules read them: normalised text, the five match types, replacements.

CoreDNS matches rules against the question name in presentation form, lower-cased and fully
qualified (``www.example.org.``), with plain string operations: ``prefix`` is a string prefix,
``suffix`` a string suffix, ``substring`` a substring (none of them stops at label boundaries),
``regex`` a Go regular expression (see :mod:`interkube.pkg.goregex`) searched anywhere in the
name. The strings a rule is written with are normalised the same way (lower case, a final dot
added), which is why ``prefix foo bar`` means ``foo.`` -> ``bar.``. This module does the same
on the same text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from interkube.pkg.goregex import PatternError

#: The highest ``{N}`` CoreDNS looks for when it counts the groups a replacement uses.
MAX_GROUP_REFERENCE: Final = 100

EXACT = "exact"
PREFIX = "prefix"
SUFFIX = "suffix"
SUBSTRING = "substring"
REGEX = "regex"
MATCH_TYPES: Final = (EXACT, PREFIX, SUFFIX, SUBSTRING, REGEX)


def normalize(name: str) -> str:
    """Lower case with a final dot, as CoreDNS's plugin.Name(...).Normalize()."""
    name = name.lower()
    return name if name.endswith(".") else name + "."


def group_references(replacement: str) -> int:
    """How many of ``{0}`` .. ``{100}`` a replacement uses (CoreDNS's count, checked against
    the pattern's groups)."""
    return sum(1 for i in range(MAX_GROUP_REFERENCE + 1) if f"{{{i}}}" in replacement)


def check_references(pattern: re.Pattern[str], source: str, replacement: str) -> None:
    """PatternError when ``replacement`` uses more groups than ``pattern`` has."""
    if group_references(replacement) > pattern.groups:
        raise PatternError(f"the replacement {replacement!r} uses more groups than the pattern "
                           f"{source!r} has ({pattern.groups})")


def expand(replacement: str, match: re.Match[str]) -> str:
    """``replacement`` with ``{0}`` (the whole match), ``{1}``, ... put in, one after the other
    as CoreDNS does; a group that took no part in the match is empty."""
    out = replacement
    for i, group in enumerate((match.group(0), *match.groups())):
        out = out.replace(f"{{{i}}}", group or "")
    return out


@dataclass(frozen=True)
class Matcher:
    """Which question names a ttl or rcode rule applies to (one of the five match types)."""

    kind: str
    text: str                                   # normalised, or a pattern's source
    pattern: re.Pattern[str] | None = None

    def matches(self, name: str) -> bool:
        kind = self.kind
        if kind == EXACT:
            return name == self.text
        if kind == PREFIX:
            return name.startswith(self.text)
        if kind == SUFFIX:
            return name.endswith(self.text)
        if kind == SUBSTRING:
            return self.text in name
        assert self.pattern is not None
        return self.pattern.search(name) is not None


# --- string rewriters: what response rules do to the names of a response ---------------------


class Rewriter:
    """A function of a name's text (lower case, fully qualified): the new text, or the same."""

    def __call__(self, name: str) -> str:
        raise NotImplementedError


class Remap(Rewriter):
    """``old`` -> ``new``, and every name below ``old`` to the same name below ``new`` (what
    ``answer auto`` undoes a rewritten question with)."""

    __slots__ = ("old", "new")

    def __init__(self, old: str, new: str) -> None:
        self.old = old
        self.new = new

    def __call__(self, name: str) -> str:
        old = self.old
        if name == old:
            return self.new
        cut = len(name) - len(old)
        if cut > 0 and name[cut - 1] == "." and name.endswith(old):
            return name[:cut] + self.new
        return name


class SuffixSwap(Rewriter):
    """A string suffix swapped for another (``answer auto`` of a suffix rule)."""

    __slots__ = ("suffix", "replacement")

    def __init__(self, suffix: str, replacement: str) -> None:
        self.suffix = suffix
        self.replacement = replacement

    def __call__(self, name: str) -> str:
        if name.endswith(self.suffix):
            return name[:len(name) - len(self.suffix)] + self.replacement
        return name


class RegexReplace(Rewriter):
    """A name the pattern finds anything in becomes the replacement, its groups put in (the
    whole name is replaced, not only what matched: CoreDNS's ``answer name`` and ``value``)."""

    __slots__ = ("pattern", "replacement")

    def __init__(self, pattern: re.Pattern[str], replacement: str) -> None:
        self.pattern = pattern
        self.replacement = replacement

    def __call__(self, name: str) -> str:
        m = self.pattern.search(name)
        return name if m is None else expand(self.replacement, m)


__all__ = ["EXACT", "MATCH_TYPES", "PREFIX", "REGEX", "SUBSTRING", "SUFFIX", "Matcher", "RegexReplace", "Remap",
           "Rewriter", "SuffixSwap", "check_references", "expand", "group_references", "normalize"]

"""Kubernetes label selectors (``app=web,tier in (a, b),!legacy``): parsed once, matched often.

The grammar is the API server's: requirements joined by commas, each one of ``key``,
``!key``, ``key=value``, ``key==value``, ``key!=value``, ``key in (v1, v2)`` and
``key notin (v1, v2)``. The same text is sent to the API server as ``labelSelector`` (so it
filters what is sent) and matched here (so snapshot files and every source filter alike).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

#: A label key: an optional DNS-subdomain prefix and a name; values are looser (and may be "").
_KEY = r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_TOKEN = re.compile(
    rf"\s*(?:(?P<not>!)\s*(?P<nkey>{_KEY})"
    rf"|(?P<key>{_KEY})(?:\s*(?P<op>==|!=|=)\s*(?P<value>{_VALUE})"
    rf"|\s+(?P<setop>in|notin)\s*\(\s*(?P<values>{_VALUE}(?:\s*,\s*{_VALUE})*)\s*\))?)\s*"
)


class SelectorError(ValueError):
    """A label selector that does not parse; the message points at the place."""


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str                         # exists, !exists, =, !=, in, notin
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and labels[self.key] in self.values
        return not present or labels[self.key] not in self.values  # != and notin


@dataclass(frozen=True)
class Selector:
    """All requirements must hold; the empty selector matches everything."""

    text: str
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def __bool__(self) -> bool:
        return bool(self.requirements)


EVERYTHING = Selector("")


def parse_selector(text: str) -> Selector:
    """Parse ``text``; raises SelectorError naming the offending part."""
    reqs: list[Requirement] = []
    pos = 0
    text = text.strip()
    if not text:
        return EVERYTHING
    while True:
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise SelectorError(f"cannot parse label selector at {text[pos:]!r}")
        if m.group("not"):
            reqs.append(Requirement(m.group("nkey"), "!exists"))
        elif m.group("op"):
            op = "=" if m.group("op") in ("=", "==") else "!="
            reqs.append(Requirement(m.group("key"), op, frozenset([m.group("value")])))
        elif m.group("setop"):
            values = frozenset(v.strip() for v in m.group("values").split(","))
            reqs.append(Requirement(m.group("key"), m.group("setop"), values))
        else:
            reqs.append(Requirement(m.group("key"), "exists"))
        pos = m.end()
        if pos == len(text):
            break
        if text[pos] != ",":
            raise SelectorError(f"expected ',' between requirements at {text[pos:]!r}")
        pos += 1
    return Selector(text, tuple(reqs))

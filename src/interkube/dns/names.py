"""Domain names as the hot path uses them: lower-cased wire bytes, matched on label boundaries."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import dns.name

from interkube.dns.memo import Memo
from interkube.dns.wire import label_offsets

#: Names remembered per zone set, the oldest forgotten first (see interkube.dns.memo): a flood
#: of random names costs at most one label walk per query, never unbounded memory. Every plugin
#: with zones has a set, so this is per plugin: kept small, and sized by the names the plugins
#: serve (two entries a name, at most _MEMO_CEILING: about 40 bytes an entry) so that a large
#: zone asked in turn still hits.
_MEMO_LIMIT = 16384
_MEMO_PER_NAME = 2.0
_MEMO_CEILING = 1 << 18


def to_wire(name: str | dns.name.Name) -> bytes:
    """Lower-cased, uncompressed wire form of a fully qualified name."""
    if isinstance(name, str):
        name = dns.name.from_text(name)
    wire = name.canonicalize().to_wire()
    assert wire is not None  # to_wire() without a file returns the bytes
    return wire


def is_subdomain(name: str, zone: str) -> bool:
    """True when ``name`` equals ``zone`` or lies below it (case-insensitive, text form)."""
    return dns.name.from_text(name).is_subdomain(dns.name.from_text(zone))


class ZoneSet:
    """A set of zones answering "which is the longest zone that contains this name?"."""

    __slots__ = ("zones", "_wires", "_memo", "_memos", "_fixed", "_fixed_zone")

    def __init__(self, zones: Iterable[str]) -> None:
        self.zones: tuple[str, ...] = tuple(zones)
        self._wires: dict[bytes, str] = {to_wire(z): dns.name.from_text(z).to_text().lower()
                                          for z in self.zones}
        #: The same answer for every name (no zone: None; the root alone: "."), as most plugins'
        #: sets have (forward's from ".", its except and cache's disable lists empty): such a
        #: set keeps no memo at all.
        self._fixed = not self._wires or list(self._wires) == [b"\x00"]
        self._memos: Memo[bytes, str | None] = Memo(_MEMO_LIMIT) if self._fixed else \
            Memo(_MEMO_LIMIT, per_name=_MEMO_PER_NAME, ceiling=_MEMO_CEILING)
        self._memo = self._memos.table
        self._fixed_zone = self._wires.get(b"\x00")

    def match(self, lname: bytes) -> str | None:
        """The longest zone (text form) containing the lower-cased wire name, or None."""
        if self._fixed:
            return self._fixed_zone
        try:  # one lookup on a hit (a try costs nothing in 3.11): this runs for every query
            return self._memo[lname]
        except KeyError:
            pass
        found = None
        wires = self._wires
        for off in label_offsets(lname):
            zone = wires.get(lname[off:])
            if zone is not None:
                found = zone
                break
        self._memos.remember(lname, found)
        return found

    def match_text(self, name: str | dns.name.Name) -> str | None:
        return self.match(to_wire(name))

    def __bool__(self) -> bool:
        return bool(self.zones)

    def __iter__(self) -> Iterator[str]:
        return iter(self.zones)

"""Domain names as the hot path uses them: lower-cased wire bytes, matched on label boundaries."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import dns.name

from interkube.dns.wire import label_offsets

#: Memo tables stop growing here and start again empty; a flood of random names costs at most
#: one label walk per query, never unbounded memory.
_MEMO_LIMIT = 65536


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

    __slots__ = ("zones", "_wires", "_memo")

    def __init__(self, zones: Iterable[str]) -> None:
        self.zones: tuple[str, ...] = tuple(zones)
        self._wires: dict[bytes, str] = {to_wire(z): dns.name.from_text(z).to_text().lower()
                                          for z in self.zones}
        self._memo: dict[bytes, str | None] = {}

    def match(self, lname: bytes) -> str | None:
        """The longest zone (text form) containing the lower-cased wire name, or None."""
        memo = self._memo
        try:  # one lookup on a hit (a try costs nothing in 3.11): this runs for every query
            return memo[lname]
        except KeyError:
            pass
        found = None
        wires = self._wires
        for off in label_offsets(lname):
            zone = wires.get(lname[off:])
            if zone is not None:
                found = zone
                break
        if len(memo) >= _MEMO_LIMIT:
            memo.clear()
        memo[lname] = found
        return found

    def match_text(self, name: str | dns.name.Name) -> str | None:
        return self.match(to_wire(name))

    def __bool__(self) -> bool:
        return bool(self.zones)

    def __iter__(self) -> Iterator[str]:
        return iter(self.zones)

"""``fallthrough [ZONES...]``: the one helper every plugin uses for it, as CoreDNS's pkg/fall.

Without the option a plugin's NXDOMAIN is final. With it, a query that would get NXDOMAIN is
passed to the next plugin instead: for every name (no zones given) or only for names inside
the zones given.
"""

from __future__ import annotations

from typing import NamedTuple

from interkube.corefile.parser import Directive
from interkube.dns.names import ZoneSet
from interkube.pkg import args


class Fallthrough(NamedTuple):
    """A plugin's `fallthrough`.
    (A NamedTuple, not a dataclass: a dataclass is a few exec'd functions at import, a
    millisecond of every start, issue 18.)"""

    zones: tuple[str, ...] | None = None  # None: the option was not given
    enabled: bool = False

    def applies(self, lname: bytes) -> bool:
        """Whether a would-be NXDOMAIN for this lower-cased wire name goes to the next plugin."""
        if not self.enabled:
            return False
        if not self.zones:
            return True
        return _zone_sets.setdefault(self.zones, ZoneSet(self.zones)).match(lname) is not None


_zone_sets: dict[tuple[str, ...], ZoneSet] = {}

NEVER = Fallthrough()


def parse(d: Directive) -> Fallthrough:
    """Parse a ``fallthrough [ZONES...]`` option line."""
    args.no_block(d)
    return Fallthrough(zones=args.zones(d.args), enabled=True)

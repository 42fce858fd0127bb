"""Zone transfers: what a handler that holds whole zones offers the *transfer* plugin.

CoreDNS's *transfer* plugin asks the plugins of its server block that implement its Transferer
interface for a zone's records and is called back by them when a zone changes. Here a handler
that can copy its zones is a :class:`ZoneSource` (file, kubernetes); the *transfer* handler
finds the sources among the handlers after it in its chain when it starts, so that neither side
imports the other:

* :meth:`ZoneSource.transfer_zones`: the zones it can copy (NOTIFY is sent for those);
* :meth:`ZoneSource.zone_copy`: one zone as it is now: its SOA, and its other records in the
  order a transfer sends them, produced lazily a few at a time (a cluster's zone can hold tens of
  thousands of records, and the transfer makes them between other work of the event loop);
  None when it holds no zone of exactly that name (CoreDNS's ErrNotAuthoritative);
* :meth:`ZoneSource.watch_zones`: call a listener with a zone's name after each change of the
  zone's data, so that secondaries are sent a NOTIFY. A source whose answers carry a serial it
  does not otherwise move (kubernetes) makes it follow its changes once it is watched, since a
  secondary compares serials to know whether to transfer again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import dns.name
import dns.rdataset
import dns.rrset

#: Called with the zone (lower case, fully qualified text) whose data changed.
ZoneListener = Callable[[str], None]
#: An owner name and its records of one type (an RRset is one too: ``(rrset.name, rrset)``), so
#: that a source that keeps rdatasets by name (a zone file) need not copy them into RRsets.
Owned = tuple[dns.name.Name, dns.rdataset.Rdataset]


@dataclass(frozen=True)
class ZoneCopy:
    """One zone for a transfer: its SOA (the first and the last record sent) and every other
    record, in transfer order, a batch at a time (each batch a few record sets, cheap to make)."""

    soa: dns.rrset.RRset
    records: Iterator[Sequence[Owned]]

    @property
    def serial(self) -> int:
        return int(self.soa[0].serial)


@runtime_checkable
class ZoneSource(Protocol):
    """A handler whose zones can be transferred (see the module docstring)."""

    def transfer_zones(self) -> tuple[str, ...]:
        """The zones this handler can copy (lower case, fully qualified text)."""

    def zone_copy(self, zone: str) -> ZoneCopy | None:
        """``zone`` (lower case, fully qualified text) as it is now, or None when this handler
        holds no zone of exactly that name, or has no data for it yet."""

    def watch_zones(self, listener: ZoneListener) -> None:
        """Call ``listener(zone)`` after each change of one of this handler's zones."""


__all__ = ["Owned", "ZoneCopy", "ZoneListener", "ZoneSource"]

"""Bounded memo tables for the hot path: a plain dict (read with one subscript, as fast as any
dict) and the order its keys came in, so that a full table forgets its oldest entry on each
insert.

Tables that started over when full (``dict.clear()`` at 65,536 entries) freed tens of thousands
of objects at once: under a flood of new names that was a stall of the event loop every few
seconds, and several such tables with tens of thousands of entries each held a hundred MB.
Forgetting one entry per insert costs a deque append and pop, and never stalls.

A memo keyed by query names (the query parse memo, the zone matches) is only worth its upkeep
when it holds the names clients ask again: with fewer entries than names asked in turn (a
cluster of 100,000 Services, each asked in turn), oldest-first forgetting drops every entry
before its name comes back, and the table never hits. Such memos are *sized*: their bound
follows the number of names the plugins' data serves (:data:`SERVED_NAMES`, which a plugin
holding names tells how many it holds), ``per_name`` entries each, never below the memo's own
bound nor above its ``ceiling`` (a memory figure: a served name costs a memo entry only when
asked, but a flood of random names fills any memo to its bound). So the memory stays bounded
by what the operator configured, and by the ceiling whatever the data.
"""

from __future__ import annotations

import weakref
from collections import deque
from typing import Generic, Protocol, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Memo(Generic[K, V]):
    """``table``, at most ``limit`` entries; :meth:`remember` adds one, forgetting the oldest.

    Readers use ``table`` directly (``memo.table[key]``, ``memo.table.get``): a hit costs what
    a dict lookup costs.

    With ``per_name`` (entries per served name) the memo is sized by :data:`SERVED_NAMES`:
    ``limit`` is then ``base`` raised to ``per_name`` times the names served, at most
    ``ceiling``.
    """

    __slots__ = ("limit", "order", "table", "base", "per_name", "ceiling", "__weakref__")

    def __init__(self, limit: int, *, per_name: float = 0.0, ceiling: int = 0) -> None:
        self.base = limit
        self.limit = limit
        self.per_name = per_name
        self.ceiling = max(ceiling, limit)
        self.table: dict[K, V] = {}
        self.order: deque[K] = deque()
        if per_name:
            SERVED_NAMES.size(self)

    def remember(self, key: K, value: V) -> None:
        """Add ``key`` (not in the table: callers remember what they just missed)."""
        table = self.table
        order = self.order
        while len(order) >= self.limit:  # (a while: a limit lowered meanwhile is reached at once)
            table.pop(order.popleft(), None)
        order.append(key)
        table[key] = value

    def resize(self, names: int) -> None:
        """Bound the memo for ``names`` served names (see the class's docstring)."""
        self.limit = min(self.ceiling, max(self.base, int(self.per_name * names)))

    def clear(self) -> None:
        self.table.clear()
        self.order.clear()

    def __len__(self) -> int:
        return len(self.table)


class Sized(Protocol):
    """A memo that :data:`SERVED_NAMES` bounds: told the names served whenever they change."""

    def resize(self, names: int) -> None: ...


class ServedNames:
    """How many names the plugins' data serves, in total: what sized memos are bounded by.

    Each holder of names (a kubernetes stanza, say) calls :meth:`announce` with its count when
    it changes; a holder that is gone (a configuration replaced by a reload) stops counting
    when it is collected, or when it announces 0. The memos follow at once.
    """

    def __init__(self) -> None:
        #: Names by holder (its id: a holder need not be hashable), each dropped by a finalizer
        #: when its holder is collected.
        self._counts: dict[int, int] = {}
        self._memos: weakref.WeakSet[Sized] = weakref.WeakSet()

    @property
    def total(self) -> int:
        return sum(self._counts.values())

    def announce(self, holder: object, names: int) -> None:
        """``holder`` serves ``names`` names from now on."""
        key = id(holder)
        if self._counts.get(key, 0) == names:
            return
        if key not in self._counts:
            weakref.finalize(holder, self._forget, key)
        self._counts[key] = names
        self._resize()

    def _forget(self, key: int) -> None:
        if self._counts.pop(key, 0):
            self._resize()

    def _resize(self) -> None:
        total = self.total
        for memo in list(self._memos):
            memo.resize(total)

    def size(self, memo: Sized) -> None:
        """Keep ``memo`` bounded by the names served (now and after each announce)."""
        self._memos.add(memo)
        memo.resize(self.total)


#: The process's served names (one event loop's data: every worker process has its own).
SERVED_NAMES = ServedNames()

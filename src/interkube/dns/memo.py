"""Bounded memo tables for the hot path: a plain dict (read with one subscript, as fast as any
dict) and the order its keys came in, so that a full table forgets its oldest entry on each
insert.

Tables that started over when full (``dict.clear()`` at 65,536 entries) freed tens of thousands
of objects at once: under a flood of new names that was a stall of the event loop every few
seconds, and several such tables with tens of thousands of entries each held a hundred MB.
Forgetting one entry per insert costs a deque append and pop, and never stalls.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Memo(Generic[K, V]):
    """``table``, at most ``limit`` entries; :meth:`remember` adds one, forgetting the oldest.

    Readers use ``table`` directly (``memo.table[key]``, ``memo.table.get``): a hit costs what
    a dict lookup costs.
    """

    __slots__ = ("limit", "order", "table")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.table: dict[K, V] = {}
        self.order: deque[K] = deque()

    def remember(self, key: K, value: V) -> None:
        """Add ``key`` (not in the table: callers remember what they just missed)."""
        table = self.table
        order = self.order
        while len(order) >= self.limit:  # (a while: a limit lowered meanwhile is reached at once)
            table.pop(order.popleft(), None)
        order.append(key)
        table[key] = value

    def clear(self) -> None:
        self.table.clear()
        self.order.clear()

    def __len__(self) -> int:
        return len(self.table)

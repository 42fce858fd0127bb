"""Overlapping CIDR blocks by an interval sweep, and free blocks between used ones.

Two CIDR blocks are either disjoint or one contains the other. Sorted by (start, largest first),
the blocks still open at a start point therefore form a chain of nested blocks, i.e. a stack,
and each new block overlaps exactly the blocks on the stack. That gives every overlapping pair
in O(n log n + pairs), where comparing all pairs would be O(n^2).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

from interkube.netplan.model import IPNetwork

T = TypeVar("T")


def overlapping_pairs(blocks: Iterable[tuple[IPNetwork, T]]) -> Iterator[tuple[T, T]]:
    """Yield ``(outer, inner)`` for every two blocks that share an address.

    ``outer`` contains ``inner`` (they may be equal). IPv4 and IPv6 never overlap.
    """
    keyed = sorted(
        ((net.version, int(net.network_address), -int(net.broadcast_address), i, item)
         for i, (net, item) in enumerate(blocks)),
        key=lambda k: k[:4],
    )
    stack: list[tuple[int, int, T]] = []  # (version, last address, item), each inside the one below
    for version, start, neg_end, _, item in keyed:
        while stack and (stack[-1][0] != version or stack[-1][1] < start):
            stack.pop()
        for _, _, outer in stack:
            yield outer, item
        stack.append((version, -neg_end, item))


def merge_intervals(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, non-overlapping, non-adjacent union of closed intervals."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1] + 1:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def first_free_block(pool: IPNetwork, prefixlen: int, used: Sequence[tuple[int, int]]) -> IPNetwork | None:
    """The lowest ``/prefixlen`` inside ``pool`` that touches none of ``used``.

    ``used`` holds closed intervals of integer addresses, as :func:`merge_intervals` returns them.
    """
    if prefixlen < pool.prefixlen or prefixlen > pool.max_prefixlen:
        return None
    size = 1 << (pool.max_prefixlen - prefixlen)
    pool_start, pool_end = int(pool.network_address), int(pool.broadcast_address)
    candidate = pool_start  # the pool is aligned to its own size, hence to ``size`` too
    for start, end in used:
        if end < candidate:
            continue
        if candidate + size - 1 < start:
            break
        candidate = -(-(end + 1) // size) * size  # round up to the next aligned block
        if candidate > pool_end:
            return None
    if candidate + size - 1 > pool_end:
        return None
    network_type = ipaddress.IPv4Network if pool.version == 4 else ipaddress.IPv6Network
    return network_type((candidate, prefixlen))

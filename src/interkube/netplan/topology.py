"""Who can reach whom over a plan's links: connected groups, with or without NAT links."""

from __future__ import annotations

from collections.abc import Iterable

from interkube.netplan.model import Link, LinkKind, Plan


class Connectivity:
    """Groups of members (clusters and external networks) joined by links.

    A path through an external network counts (two clusters on one on-prem network reach each
    other through it). With ``flat_only`` the links that translate addresses are left out, which
    answers "is there a path without NAT" (what the scenario Forwarded DNS between clusters
    requires).
    """

    def __init__(self, plan: Plan, flat_only: bool = False) -> None:
        self._parent: dict[str, str] = {}
        for member in (*(c.name for c in plan.clusters), *(e.name for e in plan.external)):
            self._parent[member] = member
        for link in plan.links:
            if flat_only and link.nat:
                continue
            first, *rest = link.between
            for other in rest:
                self._union(first, other)

    def _find(self, name: str) -> str:
        root = name
        while self._parent[root] != root:
            root = self._parent[root]
        while self._parent[name] != root:  # path compression keeps later lookups short
            self._parent[name], name = root, self._parent[name]
        return root

    def _union(self, a: str, b: str) -> None:
        root_a, root_b = self._find(a), self._find(b)
        if root_a != root_b:
            self._parent[root_b] = root_a

    def connected(self, a: str, b: str) -> bool:
        return self._find(a) == self._find(b)

    def groups(self, names: Iterable[str]) -> list[tuple[str, ...]]:
        """``names`` split into groups that reach each other, in first-seen order."""
        by_root: dict[str, list[str]] = {}
        for name in names:
            by_root.setdefault(self._find(name), []).append(name)
        return [tuple(group) for group in by_root.values()]


def link_count(links: Iterable[Link]) -> int:
    """Connections to build and run: one per peering or VPN, one spoke per hub member."""
    return sum(len(link.between) if link.kind is LinkKind.HUB else 1 for link in links)


def neighbours(links: Iterable[Link]) -> dict[str, set[str]]:
    """For each member, the members that one of ``links`` joins it to directly."""
    out: dict[str, set[str]] = {}
    for link in links:
        for member in link.between:
            out.setdefault(member, set()).update(m for m in link.between if m != member)
    return out

"""What a cluster's data keeps: which resources, which namespaces, which labels.

The same filter applies to every source, so a snapshot and a live API give the same data for the
same objects. Objects outside the filter are not kept at all (CoreDNS keeps them and hides them at
query time; the answers are the same and the memory is not spent).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from interkube.kube.labels import EVERYTHING, Selector
from interkube.kube.objects import (
    ENDPOINT_SLICES,
    NAMESPACES,
    PODS,
    SERVICE_EXPORTS,
    SERVICE_IMPORTS,
    SERVICES,
    Kind,
    Read,
    Record,
)

#: Resources the label selector applies to, as CoreDNS applies it (the MCS objects are not
#: the Service's and carry labels of their own).
SELECTED = frozenset({"services", "endpointslices", "pods"})


@dataclass(frozen=True)
class Filters:
    namespaces: frozenset[str] = frozenset()   # empty: every namespace
    selector: Selector = EVERYTHING
    pods: bool = False                         # keep Pods (`pods verified`)
    endpoints: bool = True                     # keep EndpointSlices (not `noendpoints`)

    def kinds(self) -> tuple[Kind[Any], ...]:
        """The resources to read, required ones first (then the optional ones: Namespaces and
        the MCS objects, which a cluster or its RBAC may not offer)."""
        kinds: list[Kind[Any]] = [SERVICES]
        if self.endpoints:
            kinds.append(ENDPOINT_SLICES)
        if self.pods:
            kinds.append(PODS)
        return (*kinds, NAMESPACES, SERVICE_EXPORTS, SERVICE_IMPORTS)

    @property
    def scope(self) -> str | None:
        """The one namespace read, when the filter keeps exactly one: its objects are then
        listed and watched in that namespace (what a Role in it grants), not cluster-wide."""
        return next(iter(self.namespaces)) if len(self.namespaces) == 1 else None

    def path(self, kind: Kind[Any]) -> str:
        """Where ``kind`` is listed and watched: its namespace's collection in :attr:`scope`
        (Namespaces themselves are cluster-wide), else the cluster-wide one."""
        scope = self.scope
        if scope is None or kind is NAMESPACES:
            return kind.path
        base, _, resource = kind.path.rpartition("/")
        return f"{base}/namespaces/{scope}/{resource}"

    def keep(self, kind: Kind[Any], read: Read) -> Record | None:
        """The record to keep for ``read``; None when the filter leaves the object out."""
        if self.namespaces and (read.name if kind is NAMESPACES else read.namespace) not in self.namespaces:
            return None
        if self.selector and kind.resource in SELECTED and not self.selector.matches(read.labels):
            return None
        return read.record

"""Answers a plugin builds from another stanza's cluster, kept while what they read holds.

A plugin that reads the data of a kubernetes stanza of its server block (k8s_external, splitdns)
keeps its own answers as templates, one :class:`~interkube.plugin.answers.DependentGeneration`
per index of that cluster; :class:`FollowedCluster` subscribes to the cluster's watch events and
drops exactly the answers that looked at what an event changed (a relist is a new index, and
with it a new generation). The cluster is given per query: a stanza may join a cluster already
running when it starts, and a reload brings another.
"""

from __future__ import annotations

from interkube.kube.cluster import Cluster
from interkube.kube.index import ClusterIndex, DepKey
from interkube.plugin.answers import DependentGeneration


class FollowedCluster:
    """The templates built from one cluster's data, dropped as the cluster changes."""

    __slots__ = ("generation", "_watched")

    def __init__(self) -> None:
        self.generation: DependentGeneration[ClusterIndex | None] = DependentGeneration(None)
        #: The cluster whose changes are followed.
        self._watched: Cluster | None = None

    def current(self, cluster: Cluster) -> DependentGeneration[ClusterIndex | None]:
        """The generation of ``cluster``'s current index (None until its first sync)."""
        if cluster is not self._watched:
            self._watch(cluster)
        index = cluster.index
        gen = self.generation
        if gen.data is not index:
            gen = self.generation = DependentGeneration(index)
        return gen

    def _watch(self, cluster: Cluster | None) -> None:
        if self._watched is not None:
            self._watched.unsubscribe(self._changed)
        if cluster is not None:
            cluster.subscribe(self._changed)
        self._watched = cluster

    def _changed(self, index: ClusterIndex, keys: set[DepKey] | None) -> None:
        """The cluster's data changed: drop the answers that looked at what changed."""
        gen = self.generation
        if gen.data is not index:
            return  # templates of an older index; replaced at the next query
        if keys is None:
            self.generation = DependentGeneration(index)
        else:
            gen.templates.invalidate(keys)

    def stop(self) -> None:
        self._watch(None)


__all__ = ["FollowedCluster"]

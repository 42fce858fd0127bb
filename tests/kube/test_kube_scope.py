"""A cluster read in one namespace (a stanza's `namespaces NS`): listed and watched in that
namespace's collections, which a Role there grants, and not cluster-wide; with several
namespaces, cluster-wide as before (a Role cannot span them)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from interkube.kube.filters import Filters
from interkube.kube.objects import ENDPOINT_SLICES, NAMESPACES, SERVICES
from testkit.fakekube import FakeKube, service
from testkit.waiting import until

StartCluster = Callable[..., Awaitable[Any]]  # the start_cluster fixture (conftest.py)


def test_paths() -> None:
    one, two = Filters(namespaces=frozenset({"shop"})), Filters(namespaces=frozenset({"shop", "web"}))
    assert one.scope == "shop" and two.scope is None and Filters().scope is None
    assert one.path(SERVICES) == "/api/v1/namespaces/shop/services"
    assert one.path(ENDPOINT_SLICES) == "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices"
    assert one.path(NAMESPACES) == "/api/v1/namespaces"  # cluster-wide: (a Role cannot grant it)
    assert two.path(SERVICES) == Filters().path(SERVICES) == "/api/v1/services"


async def test_one_namespace_is_listed_and_watched_there(kube: FakeKube, start_cluster: StartCluster) -> None:
    kube.add(service("shop", "db", cluster_ips=["10.96.0.71"]))
    kube.add(service("other", "web", cluster_ips=["10.96.0.72"]))
    cluster = await start_cluster(kube, Filters(namespaces=frozenset({"shop"})))
    await until(lambda: cluster.synced, "first sync")
    assert cluster.index.service("shop", "db") is not None and cluster.index.service("other", "web") is None
    services = [r for r in kube.requests if "/services?" in r]
    assert services and all(r.startswith("GET /api/v1/namespaces/shop/services?") for r in services), services
    await until(lambda: any("watch=1" in r and "/namespaces/shop/services?" in r for r in kube.requests), "a watch")
    kube.add(service("shop", "new", cluster_ips=["10.96.0.73"]))
    await until(lambda: cluster.index.service("shop", "new") is not None, "the watched Service")

"""The live source against the fake API: list, watch, bookmarks, 410, drops, stalls, 403, outages."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from interkube.kube.filters import Filters
from interkube.kube.labels import parse_selector
from interkube.kube.live import LiveOptions
from testkit.fakekube import (
    ENDPOINT_SLICE,
    SERVICE,
    SERVICE_EXPORT,
    SERVICE_IMPORT,
    FakeKube,
    endpoint_slice,
    pod,
    service,
)
from testkit.waiting import until

StartCluster = Callable[..., Awaitable[Any]]  # the start_cluster fixture (conftest.py)


def ips(cluster: Any, ns: str, name: str) -> tuple[str, ...] | None:
    svc = cluster.index.service(ns, name)
    return None if svc is None else svc.cluster_ips


def watch_requests(kube: FakeKube, resource: str = "services") -> list[str]:
    return [r for r in kube.requests if "watch=1" in r and f"/{resource}?" in r]


async def test_lists_in_pages_then_follows_creates_updates_deletes(kube: FakeKube, start_cluster: StartCluster) -> None:
    cluster = await start_cluster(kube)
    await until(lambda: cluster.synced, "first sync")
    assert ips(cluster, "app", "web") == ("10.96.0.10",)
    assert [s.endpoints[0].ip for s in cluster.index.slices("app", "web")] == ["10.244.1.5"]
    assert any("continue=" in r for r in kube.requests)  # 4 Services in pages of 2
    await until(lambda: len(watch_requests(kube)) == 1, "a watch of services")
    [watch] = watch_requests(kube)
    assert "allowWatchBookmarks=true" in watch and f"resourceVersion={kube.resource_version}" in watch
    first_index = cluster.index

    kube.add(service("app", "new", cluster_ips=["10.96.0.99"]))
    await until(lambda: ips(cluster, "app", "new") == ("10.96.0.99",), "the created Service")
    kube.add(service("app", "new", cluster_ips=["10.96.0.98"]))
    await until(lambda: ips(cluster, "app", "new") == ("10.96.0.98",), "the updated Service")
    kube.add(endpoint_slice("app", "web-1", "web", [{"ip": "10.244.1.6"}]))
    await until(lambda: cluster.index.slices("app", "web")[0].endpoints[0].ip == "10.244.1.6", "the updated slice")
    kube.delete(service("app", "new"))
    await until(lambda: cluster.index.service("app", "new") is None, "the deleted Service")
    assert cluster.index is first_index  # events change the index in place; only relists replace it
    assert cluster.stats.relists == 0


async def test_bookmarks_move_the_resource_version(kube: FakeKube, start_cluster: StartCluster) -> None:
    cluster = await start_cluster(kube)
    await until(lambda: len(watch_requests(kube)) == 1, "a watch")
    source = cluster.source
    kube.add({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})  # moves the version only
    kube.bookmark()
    await until(lambda: source.versions["services"] == str(kube.resource_version), "the bookmark's version")
    kube.drop_watches()
    await until(lambda: len(watch_requests(kube)) == 2, "a new watch after the drop")
    assert f"resourceVersion={kube.resource_version}" in watch_requests(kube)[1]


@pytest.mark.parametrize("expire_as_status", [False, True], ids=["error-event", "http-status"])
async def test_410_gone_relists_and_swaps_the_index(expire_as_status: bool, start_cluster: StartCluster) -> None:
    async with FakeKube(watch=True, expire_as_status=expire_as_status) as kube:
        kube.add_all([service("app", "web", cluster_ips=["10.96.0.10"]),
                      service("app", "old", cluster_ips=["10.96.0.5"])])
        cluster = await start_cluster(kube)
        await until(lambda: len(watch_requests(kube)) == 1, "a watch")
        old_index = cluster.index
        await kube.pause()                       # the API is gone while an object is deleted ...
        kube.delete(service("app", "old"))
        kube.compact()                           # ... and the history the watch needs with it
        await kube.resume()
        await until(lambda: cluster.index is not old_index, "a relist")
        assert cluster.index.service("app", "old") is None
        assert ips(cluster, "app", "web") == ("10.96.0.10",)
        assert cluster.stats.relists == 1
        kube.add(service("app", "after", cluster_ips=["10.96.0.7"]))
        await until(lambda: ips(cluster, "app", "after") == ("10.96.0.7",), "events after the relist")


async def test_running_watches_told_410_relist(kube: FakeKube, start_cluster: StartCluster) -> None:
    cluster = await start_cluster(kube)
    await until(lambda: len(watch_requests(kube)) == 1, "a watch")
    old_index = cluster.index
    kube.expire_watches()
    await until(lambda: cluster.index is not old_index, "a relist after the ERROR event")
    assert cluster.stats.relists == 1


async def test_dropped_connections_resume_from_the_last_version(kube: FakeKube, start_cluster: StartCluster) -> None:
    cluster = await start_cluster(kube)
    await until(lambda: len(watch_requests(kube)) == 1, "a watch")
    kube.add(service("app", "before", cluster_ips=["10.96.0.20"]))
    await until(lambda: ips(cluster, "app", "before") is not None, "an event")
    kube.drop_watches()
    kube.add(service("app", "during", cluster_ips=["10.96.0.21"]))   # made while no watch was open
    await until(lambda: ips(cluster, "app", "during") is not None, "the event made during the drop")
    assert cluster.stats.restarts.get("services", 0) >= 1
    assert cluster.stats.relists == 0  # resumed, not relisted


async def test_a_silent_watch_is_started_again(kube: FakeKube, start_cluster: StartCluster) -> None:
    cluster = await start_cluster(kube)
    await until(lambda: len(watch_requests(kube)) == 1, "a watch")
    kube.stall_watches()
    kube.add(service("app", "quiet", cluster_ips=["10.96.0.30"]))     # the stalled stream never says so
    await until(lambda: ips(cluster, "app", "quiet") is not None, "the event, through a new watch")
    assert len(watch_requests(kube)) >= 2
    assert cluster.stats.restarts["services"] >= 1


async def test_forbidden_list_names_the_resource_and_the_verb(start_cluster: StartCluster,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "interkube.plugin.kubernetes")
    async with FakeKube(watch=True, forbidden=[ENDPOINT_SLICE]) as kube:
        kube.add(service("app", "web"))
        cluster = await start_cluster(kube)
        await until(lambda: cluster.down is not None, "the refusal")
        await until(lambda: sum("/endpointslices?" in r for r in kube.requests) >= 3, "retries")
        assert not cluster.synced
        assert 'RBAC refused verb "list" on resource endpointslices (discovery.k8s.io/v1)' in cluster.down
        assert "cluster east, context east" in cluster.down
        refusals = [r for r in caplog.records if "RBAC refused" in r.getMessage()]
        assert len(refusals) == 1  # once per outage, not per retry


async def test_forbidden_watch_keeps_the_listed_data(kube: FakeKube, start_cluster: StartCluster) -> None:
    kube.forbid(SERVICE, "watch")
    cluster = await start_cluster(kube)
    await until(lambda: cluster.down is not None, "the refused watch")
    assert cluster.synced and ips(cluster, "app", "web") == ("10.96.0.10",)
    assert 'verb "watch" on resource services (core/v1)' in cluster.down
    kube.forbid(SERVICE)
    kube.add(service("app", "late", cluster_ips=["10.96.0.40"]))
    await until(lambda: ips(cluster, "app", "late") is not None, "events once watching is allowed")
    assert cluster.down is None


async def test_the_api_going_away_keeps_the_data_and_is_logged_once(kube: FakeKube, start_cluster: StartCluster,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "interkube.plugin.kubernetes")
    cluster = await start_cluster(kube)
    await until(lambda: len(watch_requests(kube)) == 1, "a watch")
    index = cluster.index
    await kube.pause()
    await until(lambda: cluster.down is not None, "the outage noticed")
    restarts = cluster.stats.restarts.get("services", 0)
    await until(lambda: cluster.stats.restarts.get("services", 0) >= restarts + 3, "several failed retries")
    assert cluster.index is index and ips(cluster, "app", "web") == ("10.96.0.10",)
    assert "cannot connect" in cluster.down
    age = cluster.sync_age()
    assert age is not None and age > 0
    await kube.resume()
    kube.add(service("app", "back", cluster_ips=["10.96.0.50"]))
    await until(lambda: ips(cluster, "app", "back") is not None, "events after the API is back")
    await until(lambda: cluster.down is None, "every watch running again")
    lost = [r for r in caplog.records if "answering from the data of" in r.getMessage()]
    back = [r for r in caplog.records if "reachable again" in r.getMessage()]
    assert len(lost) == 1 and len(back) == 1


async def test_malformed_objects_are_skipped_counted_and_logged_once(kube: FakeKube, start_cluster: StartCluster,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "interkube.plugin.kubernetes")
    cluster = await start_cluster(kube)
    await until(lambda: len(watch_requests(kube)) == 1, "a watch")
    bad = service("app", "bad", cluster_ips=["10.96.0.60"])
    bad["spec"]["ports"][0]["port"] = "eighty"
    kube.add(bad)
    kube.add(dict(bad, metadata={**bad["metadata"], "labels": {"again": "yes"}}))
    kube.add(service("app", "good", cluster_ips=["10.96.0.61"]))
    await until(lambda: ips(cluster, "app", "good") is not None, "the good object after the bad ones")
    assert cluster.stats.skipped == {"services": 2}
    assert cluster.index.service("app", "bad") is None
    warnings = [r for r in caplog.records if "skipping malformed services app/bad" in r.getMessage()]
    assert len(warnings) == 1


async def test_label_selector_is_sent_and_applied(kube: FakeKube, start_cluster: StartCluster) -> None:
    kube.add(service("team", "front", cluster_ips=["10.96.0.70"], labels={"tier": "front"}))
    cluster = await start_cluster(kube, Filters(selector=parse_selector("tier=front")))
    await until(lambda: cluster.synced, "first sync")
    assert ips(cluster, "team", "front") == ("10.96.0.70",) and cluster.index.service("app", "web") is None
    assert all("labelSelector=tier%3Dfront" in r for r in kube.requests if "/services?" in r)
    await until(lambda: len(watch_requests(kube)) == 1, "a watch")
    kube.add(service("team", "front", cluster_ips=["10.96.0.70"], labels={"tier": "back"}))
    await until(lambda: cluster.index.service("team", "front") is None, "the Service that left the selector")


async def test_pods_are_read_only_for_pods_verified(kube: FakeKube, start_cluster: StartCluster) -> None:
    kube.add(pod("app", "web-1", "10.244.1.5"))
    plain = await start_cluster(kube, name="plain")
    await until(lambda: plain.synced, "first sync")
    assert not any("/pods" in r for r in kube.requests)
    verified = await start_cluster(kube, Filters(pods=True), name="verified")
    await until(lambda: verified.synced, "first sync")
    assert verified.index.pod_namespaces_at("10.244.1.5") == ("app",)
    await until(lambda: len(watch_requests(kube, "pods")) == 1, "a pod watch")
    kube.add(pod("app", "web-1", "10.244.1.5", terminating=True))
    await until(lambda: verified.index.pod_namespaces_at("10.244.1.5") == (), "the terminating pod gone")


async def test_mcs_objects_are_read_when_served(start_cluster: StartCluster) -> None:
    from testkit.fakekube import DEFAULT_TYPES

    async with FakeKube(watch=True, types=(*DEFAULT_TYPES, SERVICE_EXPORT, SERVICE_IMPORT)) as kube:
        kube.add_all([service("app", "web"),
                      {"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport",
                       "metadata": {"name": "web", "namespace": "app"}},
                      {"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceImport",
                       "metadata": {"name": "web", "namespace": "app"},
                       "spec": {"type": "ClusterSetIP", "ips": ["10.100.0.1"],
                                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
                       "status": {"clusters": [{"cluster": "east"}, {"cluster": "west"}]}}])
        cluster = await start_cluster(kube)
        await until(lambda: cluster.synced, "first sync")
        assert cluster.index.service_export("app", "web") is not None
        imported = cluster.index.service_import("app", "web")
        assert imported is not None and imported.ips == ("10.100.0.1",) and imported.clusters == ("east", "west")
    # A cluster without the CRDs: no error, just no MCS objects.
    async with FakeKube(watch=True) as plain:
        plain.add(service("app", "web"))
        cluster = await start_cluster(plain, name="plain")
        await until(lambda: cluster.synced, "first sync")
        assert cluster.down is None and cluster.index.service_export("app", "web") is None


async def test_expired_continue_token_lists_again(kube: FakeKube, start_cluster: StartCluster,
                                                  fast: LiveOptions) -> None:
    served = 0
    original = kube.handlers["list"]

    async def compact_after_first_page(request: Any, *args: Any) -> Any:
        nonlocal served
        served += 1
        if served == 1:
            response = await original(request, *args)
            kube.compact()  # the token just handed out is now too old
            return response
        return await original(request, *args)

    kube.handlers["list"] = compact_after_first_page
    cluster = await start_cluster(kube, options=dataclasses.replace(fast, page_size=1))
    await until(lambda: cluster.synced, "first sync after the expired token")
    assert ips(cluster, "kube-system", "kube-dns") == ("10.96.0.53",)

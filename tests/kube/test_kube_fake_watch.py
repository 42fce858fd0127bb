"""The fake API's watch streams themselves, as kube-apiserver sends them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from testkit.fakekube import FakeKube, service
from testkit.waiting import until


@pytest.fixture
async def kube() -> AsyncIterator[FakeKube]:
    async with FakeKube(watch=True) as fake:
        fake.add(service("app", "a", labels={"tier": "front"}))
        yield fake


async def read_events(kube: FakeKube, params: dict[str, str], count: int) -> list[dict[str, Any]]:
    """The first ``count`` events of a watch (or fewer if the stream ends)."""
    events: list[dict[str, Any]] = []
    async with httpx2.AsyncClient(base_url=kube.url, headers={"Authorization": f"Bearer {kube.token}"}) as client:
        async with client.stream("GET", "/api/v1/services", params={"watch": "1", **params}) as resp:
            assert resp.status_code == 200 and resp.headers["transfer-encoding"] == "chunked"
            async for line in resp.aiter_lines():
                events.append(json.loads(line))
                if len(events) == count:
                    break
    return events


async def test_changes_after_a_version_with_bookmarks(kube: FakeKube) -> None:
    since = str(kube.resource_version)
    reader = asyncio.create_task(read_events(kube, {"resourceVersion": since, "allowWatchBookmarks": "true"}, 4))
    await until(lambda: kube.watchers > 0, "the watch to open")
    kube.add(service("app", "b"))
    kube.add(service("app", "b", cluster_ips=["10.96.0.99"]))
    kube.delete(service("app", "b"))
    kube.add({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}})  # not a Service: not sent
    kube.bookmark()
    events = await reader
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]
    assert events[1]["object"]["spec"]["clusterIPs"] == ["10.96.0.99"]
    assert events[2]["object"]["metadata"]["resourceVersion"] == "4"
    assert events[3]["object"]["metadata"]["resourceVersion"] == "5"  # past the Node's change


async def test_no_version_starts_with_the_current_state_and_selectors_add_and_delete(kube: FakeKube) -> None:
    reader = asyncio.create_task(read_events(kube, {"labelSelector": "tier=front"}, 3))
    await until(lambda: kube.watchers > 0, "the watch to open")
    kube.add(service("app", "a", labels={"tier": "back"}))    # leaves the selector: DELETED
    kube.add(service("app", "c", labels={"tier": "back"}))    # never in it: nothing
    kube.add(service("app", "c", labels={"tier": "front"}))   # enters it: ADDED
    events = await reader
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "a"), ("DELETED", "a"), ("ADDED", "c")]


@pytest.mark.parametrize("as_status", [False, True])
async def test_compacted_versions_are_410_gone(as_status: bool) -> None:
    async with FakeKube(watch=True, expire_as_status=as_status) as kube:
        kube.add(service("app", "a"))
        kube.add(service("app", "b"))
        kube.compact()
        headers = {"Authorization": f"Bearer {kube.token}"}
        async with httpx2.AsyncClient(base_url=kube.url, headers=headers) as client:
            resp = await client.get("/api/v1/services", params={"watch": "1", "resourceVersion": "1"})
        if as_status:
            assert resp.status_code == 410 and resp.json()["reason"] == "Expired"
        else:
            event = json.loads(resp.text)
            assert resp.status_code == 200 and event["type"] == "ERROR" and event["object"]["code"] == 410


async def test_a_timeout_ends_the_stream_cleanly(kube: FakeKube) -> None:
    events = await read_events(kube, {"resourceVersion": str(kube.resource_version), "timeoutSeconds": "0"}, 1)
    assert events == []


async def test_counters_say_what_was_served(kube: FakeKube) -> None:
    kube.add(service("app", "b"))
    headers = {"Authorization": f"Bearer {kube.token}"}
    async with httpx2.AsyncClient(base_url=kube.url, headers=headers) as client:
        first = await client.get("/api/v1/services", params={"limit": "1"})
        await client.get("/api/v1/services", params={"limit": "1", "continue": first.json()["metadata"]["continue"]})
        await client.get("/api/v1/namespaces/app/services/a")
    since = str(kube.resource_version)
    reader = asyncio.create_task(read_events(kube, {"resourceVersion": since, "allowWatchBookmarks": "true"}, 2))
    await until(lambda: kube.watchers > 0, "the watch to open")
    kube.add(service("app", "c"))
    kube.bookmark()
    await reader
    counts = kube.counters
    assert (counts["list"], counts["get"], counts["watch"]) == (2, 1, 1)  # a list page is a request
    assert counts["list_items"] == 2 and counts["list_bytes"] > 0
    assert (counts["watch_events"], counts["bookmarks"]) == (1, 1) and counts["watch_bytes"] > 0
    assert kube.peak_watchers == 1

"""The shared watch (kube.shared): worker 0's cluster fed to another worker over a unix socket.

Both ends run in one event loop here, each with its own Cluster, as two workers would."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from interkube.kube.access import ApiAccess
from interkube.kube.cluster import Cluster
from interkube.kube.filters import Filters
from interkube.kube.index import ClusterIndex
from interkube.kube.live import LiveOptions, live_source
from interkube.kube.objects import (
    Endpoint,
    EndpointSlice,
    Namespace,
    Pod,
    Port,
    Service,
    ServiceExport,
    ServiceImport,
)
from interkube.kube.shared import PAGE, FollowerSource, LeaderSource, socket_path
from testkit.fakekube import FakeKube, endpoint_slice, service, write_kubeconfig
from testkit.waiting import until

HTTP = (Port("http", "TCP", 80),)
#: The pair fixture: ``await pair("leader" | "follower")`` starts a Cluster.
Pair = Callable[[str], Awaitable[Cluster]]


def contents(cluster: Cluster) -> set[object]:
    assert cluster.index is not None
    return set(cluster.index.records())


def test_records_rebuild_an_equal_index() -> None:
    index = ClusterIndex(serial=7)
    records = [
        ("services", ("app", "web"), Service("app", "web", "ClusterIP", ("10.96.0.10",), False, HTTP)),
        ("endpointslices", ("app", "web-1"),
         EndpointSlice("app", "web-1", "web", HTTP, (Endpoint("10.244.1.5", "", "web-0", True),))),
        ("pods", ("app", "web-0"), Pod("app", "web-0", "10.244.1.5")),
        ("pods", ("app", "dual"), Pod("app", "dual", "10.244.1.6", ("fd00::6",))),
        ("namespaces", ("", "empty"), Namespace("empty")),
        ("serviceexports", ("app", "web"), ServiceExport("app", "web")),
        ("serviceimports", ("app", "web"),
         ServiceImport("app", "web", "ClusterSetIP", ("10.100.0.1",), HTTP, ("east",))),
    ]
    for resource, key, record in records:
        index.put(resource, key, record)
    assert sorted(map(repr, index.records())) == sorted(map(repr, records))
    copy = ClusterIndex(index.serial)
    for resource, key, record in index.records():
        copy.put(resource, key, record)
    assert set(copy.records()) == set(index.records()) and copy.counts() == index.counts()
    assert copy.pod_namespaces_at("fd00::6") == ("app",) and copy.namespace_exists("empty")


def test_the_socket_is_named_by_the_cluster_not_by_set_order(tmp_path: Path) -> None:
    a = ("live", Filters(namespaces=frozenset(["x", "y", "z"])))
    b = ("live", Filters(namespaces=frozenset(["z", "y", "x"])))
    assert socket_path(str(tmp_path), "east", a) == socket_path(str(tmp_path), "east", b)
    assert socket_path(str(tmp_path), "west", a) != socket_path(str(tmp_path), "east", a)
    assert len(socket_path("/tmp/interkube-workers-abcdefgh", "east", a)) < 100  # sun_path holds 108


@pytest.fixture
async def pair(tmp_path: Path, kube: FakeKube, fast: LiveOptions) -> AsyncIterator[Pair]:
    """``await pair("leader" | "follower")``: a started cluster east, fed the shared way (each
    call a new Cluster, as a worker that starts again makes a new one)."""
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"east": kube})
    live = live_source(ApiAccess(kubeconfig=str(kubeconfig), context="east"), Filters(), "east", fast)
    path = socket_path(str(tmp_path), "east", live.key)
    async with contextlib.AsyncExitStack() as stack:
        async def start(role: str) -> Cluster:
            fresh = live_source(live.access, live.filters, "east", live.options)
            source = LeaderSource(fresh, path) if role == "leader" else FollowerSource(fresh, path)
            cluster = Cluster("east", source)
            await cluster.start()
            stack.push_async_callback(cluster.stop)
            return cluster

        yield start


async def test_a_follower_gets_the_whole_index_then_every_change(kube: FakeKube, pair: Pair) -> None:
    follower = await pair("follower")  # before worker 0 is there: it waits for it
    leader = await pair("leader")
    await until(lambda: follower.synced and contents(follower) == contents(leader), "the whole index")
    assert follower.index is not None and leader.index is not None
    assert follower.index.serial == leader.index.serial
    await until(lambda: kube.watchers == 3, "worker 0's watches")
    assert kube.counters["watch"] == 3  # services, endpointslices, namespaces: worker 0's only

    kube.add(service("app", "new", cluster_ips=["10.96.0.99"]))
    kube.add(endpoint_slice("app", "web-1", "web", [{"ip": "10.244.1.6"}]))
    kube.delete(service("app", "api"))
    # A Namespace object where Services already make the namespace exist changes no answer,
    # but must reach the follower all the same: without it, "app" would vanish there once
    # its Services are gone.
    kube.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}})
    kube.delete(service("app", "new"))
    kube.delete(service("app", "web"))
    await until(lambda: contents(follower) == contents(leader) and leader.index.service("app", "web") is None,
                "the changes")
    assert follower.index.namespace_exists("app")
    assert follower.index.slices("app", "web")[0].endpoints[0].ip == "10.244.1.6"


async def test_a_relist_sends_the_whole_index_again(kube: FakeKube, pair: Pair) -> None:
    leader = await pair("leader")
    follower = await pair("follower")
    await until(lambda: follower.synced and contents(follower) == contents(leader), "the whole index")
    await until(lambda: kube.watchers == 3, "worker 0's watches")  # a watch not open yet would not expire
    first = follower.index
    kube.expire_watches()
    kube.add(service("app", "after", cluster_ips=["10.96.0.77"]))
    await until(lambda: follower.index is not first and contents(follower) == contents(leader), "the relist")
    assert leader.stats.relists >= 1 and follower.stats.relists == 0  # counted once, by worker 0


async def test_a_follower_keeps_its_data_while_worker_0_is_gone(kube: FakeKube, pair: Pair) -> None:
    leader = await pair("leader")
    follower = await pair("follower")
    await until(lambda: follower.synced and contents(follower) == contents(leader), "the whole index")
    await leader.stop()  # worker 0 died
    await until(lambda: follower.down is not None, "the follower to say so")
    assert "worker 0" in (follower.down or "")
    assert follower.index.service("app", "web") is not None  # still serving its last data
    kube.add(service("app", "meanwhile", cluster_ips=["10.96.0.66"]))
    again = await pair("leader")  # the parent started worker 0 again
    await until(lambda: follower.down is None and contents(follower) == contents(again), "the resync")
    assert follower.index.service("app", "meanwhile") is not None


async def test_a_follower_stays_down_until_a_restarted_worker_0_has_listed(kube: FakeKube, pair: Pair) -> None:
    """A restarted worker 0 takes the follower's link before it has listed: nothing fails at
    its end yet, but the follower's data still misses what changed meanwhile, so the follower
    must neither say it is up nor call its data current until the whole index has come."""
    leader = await pair("leader")
    follower = await pair("follower")
    await until(lambda: follower.synced and contents(follower) == contents(leader), "the whole index")
    await leader.stop()  # worker 0 died
    await until(lambda: follower.down is not None, "the follower to say so")
    last_contact = follower.last_contact
    # The restarted worker 0's lists wait here, so its link is up while it has no data.
    listing = asyncio.Event()
    held: list[str] = []
    plain_list = kube.handlers["list"]

    async def held_list(request: web.Request, *args: Any) -> web.StreamResponse:
        held.append(request.path)
        await listing.wait()
        return await plain_list(request, *args)

    kube.handlers["list"] = held_list
    kube.add(service("app", "meanwhile", cluster_ips=["10.96.0.66"]))
    again = await pair("leader")
    try:
        await until(lambda: bool(held) and "is back" in (follower.down or ""), "the follower to reach worker 0")
        assert again.index is None and again.down is None  # worker 0 is fine, it has only not listed
        assert follower.last_contact == last_contact  # its data is not called current
        assert follower.index is not None and follower.index.service("app", "web") is not None  # kept, served
        assert follower.index.service("app", "meanwhile") is None
    finally:
        listing.set()  # a held request would hold the fake's shutdown
    await until(lambda: follower.down is None and again.index is not None and contents(follower) == contents(again),
                "the resync")
    assert follower.index.service("app", "meanwhile") is not None
    age = follower.sync_age()
    assert age is not None and follower.last_contact != last_contact


async def test_a_follower_mirrors_the_apis_outage(kube: FakeKube, pair: Pair) -> None:
    leader = await pair("leader")
    follower = await pair("follower")
    await until(lambda: follower.synced and contents(follower) == contents(leader), "the whole index")
    await kube.pause()
    await until(lambda: leader.down is not None and follower.down == leader.down, "the outage, mirrored")
    age = follower.sync_age()
    assert age is not None and age >= 0
    await kube.resume()
    await until(lambda: leader.down is None and follower.down is None, "the recovery, mirrored")


async def test_a_large_index_comes_in_pages(kube: FakeKube, pair: Pair) -> None:
    kube.add_all(service("bulk", f"s{i}", cluster_ips=[f"10.97.{i >> 8}.{i & 255}"]) for i in range(2 * PAGE + 7))
    leader = await pair("leader")
    follower = await pair("follower")
    await until(lambda: follower.synced and contents(follower) == contents(leader), "the whole index")
    assert leader.index is not None and len(LeaderSource._full(leader.index)) == 3

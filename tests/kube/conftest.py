"""Fixtures of the cluster-source tests: a fake API with watches, and clusters fed from it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from interkube.kube.access import ApiAccess
from interkube.kube.cluster import Cluster
from interkube.kube.filters import Filters
from interkube.kube.live import LiveOptions, live_source
from testkit.fakekube import FakeKube, endpoint_slice, service, write_kubeconfig

#: Short waits so that faults are noticed within a test; the logic is the same as in production.
FAST = LiveOptions(page_size=2, request_timeout=5.0, watch_timeout=(30, 30), silence=0.5,
                   backoff_initial=0.02, backoff_max=0.1)


@pytest.fixture
def fast() -> LiveOptions:
    return FAST


def starter_objects() -> list[dict[str, Any]]:
    return [
        service("app", "web", cluster_ips=["10.96.0.10"]),
        endpoint_slice("app", "web-1", "web", [{"ip": "10.244.1.5", "pod": "web-1"}]),
        service("app", "api", cluster_ips=["10.96.0.11"]),
        service("default", "kubernetes", cluster_ips=["10.96.0.1"], ports=[("https", 443, "TCP")]),
        service("kube-system", "kube-dns", cluster_ips=["10.96.0.53"], ports=[("dns", 53, "UDP")]),
    ]


@pytest.fixture
async def kube() -> AsyncIterator[FakeKube]:
    async with FakeKube(watch=True) as fake:
        fake.add_all(starter_objects())
        yield fake


StartCluster = Callable[..., Awaitable[Cluster]]


@pytest.fixture
async def start_cluster(tmp_path: Path) -> AsyncIterator[StartCluster]:
    """``await start_cluster(fake, filters=..., options=...)``: a started cluster named east."""
    async with contextlib.AsyncExitStack() as stack:
        async def start(fake: FakeKube, filters: Filters = Filters(), options: LiveOptions = FAST,
                        name: str = "east") -> Cluster:
            kubeconfig = write_kubeconfig(tmp_path / f"kubeconfig-{name}", {name: fake})
            source = live_source(ApiAccess(kubeconfig=str(kubeconfig), context=name), filters, name, options)
            cluster = Cluster(name, source)
            await cluster.start()
            stack.push_async_callback(cluster.stop)
            return cluster

        yield start

"""The fake Kubernetes API server itself: what it serves and how it refuses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from testkit.fakekube import SERVICE_CIDR, FakeKube


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def service(ns: str, name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": {}}


@pytest.fixture
async def kube() -> AsyncIterator[FakeKube]:
    async with FakeKube(not_served=[SERVICE_CIDR]) as server:
        server.add_all([namespace("a", team="x"), namespace("b", team="y"), namespace("c"),
                        service("a", "s1"), service("b", "s2"), service("b", "s3")])
        yield server


async def get(kube: FakeKube, path: str, token: str | None = None) -> tuple[int, str, Any]:
    headers = {"Authorization": f"Bearer {token or kube.token}"}
    async with aiohttp.ClientSession() as session:
        async with session.get(kube.url + path, headers=headers) as response:
            return response.status, response.headers["Content-Type"], await response.json()


async def test_listens_on_loopback(kube: FakeKube) -> None:
    assert kube.url.startswith("http://127.0.0.1:")


async def test_token_is_required(kube: FakeKube) -> None:
    status, content_type, body = await get(kube, "/api/v1/namespaces", token="wrong")
    assert status == 401 and content_type == "application/json" and body["kind"] == "Status"


async def test_discovery_lists_what_is_served(kube: FakeKube) -> None:
    assert (await get(kube, "/api"))[2]["versions"] == ["v1"]
    groups = {g["name"]: [v["version"] for v in g["versions"]] for g in (await get(kube, "/apis"))[2]["groups"]}
    assert groups == {"discovery.k8s.io": ["v1"]}  # networking.k8s.io only held ServiceCIDR
    core = {r["name"]: r["namespaced"] for r in (await get(kube, "/api/v1"))[2]["resources"]}
    assert core["nodes"] is False and core["services"] is True
    assert (await get(kube, "/apis/networking.k8s.io/v1"))[0] == 404
    assert (await get(kube, "/apis/discovery.k8s.io"))[2]["preferredVersion"]["version"] == "v1"


async def test_lists_carry_resource_versions(kube: FakeKube) -> None:
    status, _, body = await get(kube, "/api/v1/services")
    assert status == 200 and body["kind"] == "ServiceList"
    assert [i["metadata"]["name"] for i in body["items"]] == ["s1", "s2", "s3"]
    assert body["metadata"]["resourceVersion"] == "6"
    assert [i["metadata"]["resourceVersion"] for i in body["items"]] == ["4", "5", "6"]
    kube.delete(service("b", "s3"))
    body = (await get(kube, "/api/v1/namespaces/b/services"))[2]
    assert [i["metadata"]["name"] for i in body["items"]] == ["s2"]
    assert body["metadata"]["resourceVersion"] == "7"


async def test_get_single_objects(kube: FakeKube) -> None:
    assert (await get(kube, "/api/v1/namespaces/b/services/s2"))[2]["metadata"]["name"] == "s2"
    assert (await get(kube, "/api/v1/namespaces/a"))[2]["kind"] == "Namespace"
    status, _, body = await get(kube, "/api/v1/namespaces/a/services/s2")
    assert status == 404 and body["reason"] == "NotFound"


async def test_not_served_and_unsupported_requests(kube: FakeKube) -> None:
    status, content_type, body = await get(kube, "/apis/networking.k8s.io/v1/servicecidrs")
    assert (status, content_type, body["code"]) == (404, "application/json", 404)
    assert (await get(kube, "/api/v1/services?watch=true"))[0] == 400
    assert (await get(kube, "/api/v1/services?fieldSelector=metadata.name%3Ds1"))[0] == 400
    assert (await get(kube, "/api/v1/namespaces/a/nodes"))[0] == 404


async def test_label_selectors(kube: FakeKube) -> None:
    async def names(selector: str) -> list[str]:
        _, _, body = await get(kube, f"/api/v1/namespaces?labelSelector={selector}")
        return [i["metadata"]["name"] for i in body["items"]]
    assert await names("team%3Dx") == ["a"]
    assert await names("team%21%3Dx") == ["b", "c"]
    assert await names("team") == ["a", "b"]
    assert await names("%21team") == ["c"]


async def test_paging_with_limit_and_continue(kube: FakeKube) -> None:
    first = (await get(kube, "/api/v1/services?limit=2"))[2]
    assert [i["metadata"]["name"] for i in first["items"]] == ["s1", "s2"]
    token = first["metadata"]["continue"]
    rest = (await get(kube, f"/api/v1/services?limit=2&continue={token}"))[2]
    assert [i["metadata"]["name"] for i in rest["items"]] == ["s3"]
    assert "continue" not in rest["metadata"]
    assert rest["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


async def test_lightkube_reads_the_fake(kube: FakeKube, tmp_path: Any) -> None:
    from lightkube import AsyncClient
    from lightkube.config.kubeconfig import KubeConfig
    from lightkube.resources.core_v1 import Namespace, Service

    from testkit.fakekube import write_kubeconfig

    config = KubeConfig.from_file(write_kubeconfig(tmp_path / "kubeconfig", {"fake": kube}))
    client = AsyncClient(config.get("fake"), trust_env=False)
    try:
        listed = client.list(Service, namespace="*", chunk_size=1)
        assert [s.metadata.name async for s in listed] == ["s1", "s2", "s3"]
        namespaces = [n.metadata.labels async for n in client.list(Namespace, labels={"team": "y"})]
        assert namespaces == [{"team": "y"}]
    finally:
        await client.close()

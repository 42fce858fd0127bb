"""The discovery scenario's kubernetai Corefile against two real clusters: the session's
kube-apiserver as ``east`` and a second one (its own etcd) as ``west``, each read through its own
kubeconfig, each answering its own zone; a change in one cluster is answered from its watch; and
kubernetai's local-and-remote example (one zone, the second cluster filling in) over the same
two APIs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from testkit.kubeapi import KubeAPI, KubeObjects, kubeconfig_with_contexts
from testkit.readme import on_port, readme_examples
from testkit.servers import aaddresses, free_port, in_process
from testkit.waiting import until

pytestmark = pytest.mark.peers

WAIT = 30.0


@pytest.fixture(scope="module")
def west_api(tmp_path_factory: pytest.TempPathFactory, kube_api: KubeAPI) -> Iterator[KubeAPI]:
    """A second cluster: kube-apiserver and etcd of its own."""
    api = KubeAPI(tmp_path_factory.mktemp("west"), Path(kube_api.apiserver.argv[0]),
                  Path(kube_api.etcd.process.argv[0]), name="west")
    try:
        api.start()
        yield api
    finally:
        api.stop()


@pytest.fixture
def west(west_api: KubeAPI, kube_ns: str) -> Iterator[KubeObjects]:
    """The west cluster's objects, in a namespace of the same name as east's ``kube_ns``."""
    client = west_api.client()
    objects = KubeObjects(client)
    objects.namespace(kube_ns)
    try:
        yield objects
    finally:
        west_api.delete_namespace(kube_ns)
        client.close()


@contextlib.asynccontextmanager
async def readme_example(index: int, paths: dict[str, Path]) -> AsyncIterator[int]:
    text = readme_examples("kubernetai")[index]
    for placeholder, path in paths.items():
        text = text.replace(placeholder, str(path))
    port = free_port()
    async with in_process(on_port(text, port)):
        yield port


async def ask(port: int, name: str) -> tuple[str, list[str]]:
    return await aaddresses(name, port)


async def test_the_scenarios_corefile_serves_each_cluster_under_its_own_domain(
        kube_api: KubeAPI, west_api: KubeAPI, kube: KubeObjects, west: KubeObjects, kube_ns: str) -> None:
    ns = kube_ns
    east_web = kube.service(ns, "web").spec.clusterIP
    west_web = west.service(ns, "web").spec.clusterIP
    west.headless_service(ns, "db")
    west.endpoint_slice(ns, "db-a", service="db", addresses=["10.245.0.7"])
    paths = {"/etc/interkube/east.kubeconfig": kube_api.kubeconfig,
             "/etc/interkube/west.kubeconfig": west_api.kubeconfig}
    async with readme_example(0, paths) as port:
        assert await ask(port, f"web.{ns}.svc.cluster.east") == ("NOERROR", [east_web])
        assert await ask(port, f"web.{ns}.svc.cluster.west") == ("NOERROR", [west_web])
        assert await ask(port, f"db.{ns}.svc.cluster.west") == ("NOERROR", ["10.245.0.7"])
        assert await ask(port, f"db.{ns}.svc.cluster.east") == ("NXDOMAIN", [])
        # A Service created in west afterwards: its watch brings it, to west's zone only.
        later = west.service(ns, "later").spec.clusterIP
        async def answered() -> bool:
            return await ask(port, f"later.{ns}.svc.cluster.west") == ("NOERROR", [later])

        await until(answered, "west's new Service answered", WAIT)
        assert await ask(port, f"later.{ns}.svc.cluster.east") == ("NXDOMAIN", [])


async def test_one_zone_from_two_clusters_the_local_one_first(
        kube_api: KubeAPI, west_api: KubeAPI, kube: KubeObjects, west: KubeObjects, kube_ns: str,
        tmp_path: Path) -> None:
    ns = kube_ns
    local_web = kube.service(ns, "web").spec.clusterIP
    kube.endpoint_slice(ns, "web-a", service="web", addresses=["10.244.0.5"])
    west.service(ns, "web")
    kube.service(ns, "idle")  # no endpoint here: `ignore empty_service` hands it on
    west.headless_service(ns, "idle")
    west.endpoint_slice(ns, "idle-a", service="idle", addresses=["10.245.0.9"])
    pay = west.service(ns, "pay").spec.clusterIP
    kubeconfig = kubeconfig_with_contexts(tmp_path / "kubeconfig", {"local": kube_api, "remote": west_api})
    async with readme_example(3, {"/etc/interkube/kubeconfig": kubeconfig}) as port:
        assert await ask(port, f"web.{ns}.svc.cluster.local") == ("NOERROR", [local_web])
        assert await ask(port, f"idle.{ns}.svc.cluster.local") == ("NOERROR", ["10.245.0.9"])
        assert await ask(port, f"pay.{ns}.svc.cluster.local") == ("NOERROR", [pay])
        assert await ask(port, f"gone.{ns}.svc.cluster.local") == ("NXDOMAIN", [])

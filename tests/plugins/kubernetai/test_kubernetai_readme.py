"""Every example of the kubernetai README, started as written (but for the port and the
kubeconfig paths, which point at fake API servers on loopback), answering as the README says."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype

from testkit.fakekube import FakeKube, service, write_kubeconfig
from testkit.readme import on_port, readme_examples
from testkit.servers import aquery, free_port, in_process

from kubernetai_data import east_objects, west_objects

Obj = dict[str, Any]

#: What each fake cluster holds: a context of the README's shared kubeconfig, or one of the
#: scenario's own kubeconfigs (east, west).
CLUSTERS: dict[str, list[Obj]] = {
    "east": east_objects(),
    "west": west_objects(),
    "local": east_objects(),
    "remote": west_objects(),
    "assemblage": [service("shop", "web", cluster_ips=["10.96.3.10"])],
    "conglomeration": [service("shop", "web", cluster_ips=["10.96.4.10"])],
}


@contextlib.asynccontextmanager
async def example(index: int, tmp_path: Path) -> AsyncIterator[tuple[int, Any]]:
    """README example ``index`` running against the fake clusters; yields (port, server)."""
    async with contextlib.AsyncExitStack() as stack:
        fakes: dict[str, FakeKube] = {}
        for name, objects in CLUSTERS.items():
            fake = FakeKube(watch=True)
            fake.add_all(objects)
            fakes[name] = await stack.enter_async_context(fake)
        text = readme_examples("kubernetai")[index]
        text = text.replace("/etc/interkube/kubeconfig", str(write_kubeconfig(tmp_path / "kubeconfig", fakes)))
        for name in ("east", "west"):
            path = write_kubeconfig(tmp_path / f"{name}.kubeconfig", {name: fakes[name]})
            text = text.replace(f"/etc/interkube/{name}.kubeconfig", str(path))
        port = free_port()
        server = await stack.enter_async_context(in_process(on_port(text, port)))
        yield port, server


async def ask(port: int, name: str) -> tuple[str, list[str]]:
    msg: dns.message.Message = await aquery(name, "A", port)
    return dns.rcode.to_text(msg.rcode()), sorted(rd.to_text() for rrset in msg.answer
                                                  if rrset.rdtype == dns.rdatatype.A for rd in rrset)


def test_the_readme_has_the_examples_tested_here() -> None:
    assert len(readme_examples("kubernetai")) == 4


async def test_the_scenarios_clusters_each_under_its_own_domain(tmp_path: Path) -> None:
    async with example(0, tmp_path) as (port, _):
        assert await ask(port, "web.shop.svc.cluster.east") == ("NOERROR", ["10.96.1.10"])
        assert await ask(port, "web.shop.svc.cluster.west") == ("NOERROR", ["10.96.2.10"])
        assert await ask(port, "pay.shop.svc.cluster.east") == ("NXDOMAIN", [])


async def test_three_clusters_from_the_contexts_of_one_kubeconfig(tmp_path: Path) -> None:
    async with example(1, tmp_path) as (port, server):
        assert await ask(port, "web.shop.svc.cluster.local") == ("NOERROR", ["10.96.1.10"])
        assert await ask(port, "web.shop.svc.assemblage.local") == ("NOERROR", ["10.96.3.10"])
        assert await ask(port, "web.shop.svc.conglomeration.local") == ("NOERROR", ["10.96.4.10"])
        names = [h.cluster.name for h in server.instance.built.handlers if h.plugin == "kubernetai"]
        assert names == ["local", "assemblage", "conglomeration"]  # the contexts


async def test_one_api_two_stanzas_the_first_for_the_default_namespace(tmp_path: Path) -> None:
    async with example(2, tmp_path) as (port, server):
        assert await ask(port, "kubernetes.default.svc.cluster.local") == ("NOERROR", ["10.96.0.1"])
        assert await ask(port, "web.shop.svc.cluster.local") == ("NOERROR", ["10.96.1.10"])
        first, second = (h for h in server.instance.built.handlers if h.plugin == "kubernetai")
        assert (first.cluster.name, second.cluster.name) == ("local", "local-2")
        # The first stanza has shop's names nowhere: the second one answered them.
        assert first.cluster.index.service("shop", "web") is None
        assert second.cluster.index.service("shop", "web") is not None


async def test_the_local_cluster_first_and_the_remote_one_for_the_rest(tmp_path: Path) -> None:
    async with example(3, tmp_path) as (port, _):
        assert await ask(port, "web.shop.svc.cluster.local") == ("NOERROR", ["10.96.1.10"])  # local
        assert await ask(port, "idle.shop.svc.cluster.local") == ("NOERROR", ["10.245.1.30"])  # no endpoint here
        assert await ask(port, "pay.shop.svc.cluster.local") == ("NOERROR", ["10.96.2.40"])  # remote only
        assert await ask(port, "gone.shop.svc.cluster.local") == ("NXDOMAIN", [])

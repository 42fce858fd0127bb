"""Answers from a live (fake) API: they follow events, stay cached where nothing changed, and say
SERVFAIL only until a first sync."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import dns.rcode
import pytest

from interkube.kube.registry import cluster_registry
from testkit.fakekube import FakeKube, endpoint_slice, service, write_kubeconfig
from testkit.waiting import until

Running = Any  # tests/plugins/conftest.py's Running: a server in the test's loop
Serve = Callable[[str], Awaitable[Running]]


def stanza(kubeconfig: Path, zone: str = "cluster.local", context: str = "east", startup: str = "3s") -> str:
    return f"""    kubernetes {zone} {{
        kubeconfig {kubeconfig} {context}
        startup_timeout {startup}
    }}
"""


@pytest.fixture
async def kube() -> AsyncIterator[FakeKube]:
    async with FakeKube(watch=True) as fake:
        fake.add_all([service("app", "web", cluster_ips=["10.96.0.10"]),
                      service("app", "api", cluster_ips=["10.96.0.11"]),
                      service("app", "hl", headless=True),
                      endpoint_slice("app", "hl-1", "hl", [{"ip": "10.244.1.1", "hostname": "a"}])])
        yield fake


async def addresses(k: Running, name: str, rdtype: str = "A") -> tuple[int, list[str]]:
    msg = await k.query(name, rdtype)
    return msg.rcode(), sorted(rd.to_text() for rrset in msg.answer for rd in rrset)


async def test_answers_follow_creates_updates_and_deletes(kube: FakeKube, serve: Serve, tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kc", {"east": kube})
    k = await serve(".:PORT {\n    bind 127.0.0.1\n" + stanza(kubeconfig) + "}\n")
    assert await addresses(k, "web.app.svc.cluster.local") == (dns.rcode.NOERROR, ["10.96.0.10"])
    assert (await addresses(k, "new.app.svc.cluster.local"))[0] == dns.rcode.NXDOMAIN

    kube.add(service("app", "new", cluster_ips=["10.96.0.20"]))
    await until(lambda: _is(k, "new.app.svc.cluster.local", ["10.96.0.20"]), "the created Service answered")
    kube.add(service("app", "new", cluster_ips=["10.96.0.21"]))
    await until(lambda: _is(k, "new.app.svc.cluster.local", ["10.96.0.21"]), "the updated address answered")
    kube.add(endpoint_slice("app", "hl-1", "hl", [{"ip": "10.244.1.1", "hostname": "a"},
                                                  {"ip": "10.244.1.2", "hostname": "b"}]))
    await until(lambda: _is(k, "hl.app.svc.cluster.local", ["10.244.1.1", "10.244.1.2"]), "the new endpoint")
    await until(lambda: _is(k, "b.hl.app.svc.cluster.local", ["10.244.1.2"]), "the endpoint's own name")
    kube.delete(service("app", "new"))
    await until(lambda: _rcode(k, "new.app.svc.cluster.local", dns.rcode.NXDOMAIN), "the deleted Service gone")
    # A namespace springs into existence with its first Service (an empty non-terminal).
    assert (await addresses(k, "fresh.svc.cluster.local"))[0] == dns.rcode.NXDOMAIN
    kube.add(service("fresh", "one", cluster_ips=["10.96.0.30"]))
    await until(lambda: _rcode(k, "fresh.svc.cluster.local", dns.rcode.NOERROR), "the new namespace")


async def _is(k: Running, name: str, expected: list[str]) -> bool:
    return await addresses(k, name) == (dns.rcode.NOERROR, expected)


async def _rcode(k: Running, name: str, rcode: int) -> bool:
    return (await k.query(name, "A")).rcode() == rcode


async def test_an_event_drops_only_the_answers_it_affects(kube: FakeKube, serve: Serve, tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kc", {"east": kube})
    k = await serve(".:PORT {\n    bind 127.0.0.1\n" + stanza(kubeconfig, "cluster.local in-addr.arpa") + "}\n")
    handler = k.handler("kubernetes")
    names = [("web.app.svc.cluster.local", "A"), ("api.app.svc.cluster.local", "A"),
             ("hl.app.svc.cluster.local", "A"), ("app.svc.cluster.local", "A"),
             ("10.0.96.10.in-addr.arpa", "PTR"), ("11.0.96.10.in-addr.arpa", "PTR")]
    for name, rdtype in names:
        await k.query(name, rdtype)
    table = handler.generation.templates
    assert len(table) == len(names)
    built = handler.built
    for name, rdtype in names:  # all from templates now
        await k.query(name, rdtype)
    assert handler.built == built

    kube.add(service("app", "web", cluster_ips=["10.96.0.12"]))   # web moves to another address
    await until(lambda: _is(k, "web.app.svc.cluster.local", ["10.96.0.12"]), "web's new address")
    # Dropped: web's answer and the PTR of its old address; kept: everything else.
    assert table.invalidated == 2
    before = handler.built
    for name, rdtype in names:
        await k.query(name, rdtype)
    assert handler.built == before + 1  # only the old PTR is built again (web's was rebuilt above)
    assert (await k.query("10.0.96.10.in-addr.arpa", "PTR")).rcode() == dns.rcode.NXDOMAIN
    assert handler.generation.templates is table  # an event is no new generation


async def test_a_relist_starts_a_new_generation(kube: FakeKube, serve: Serve, tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kc", {"east": kube})
    k = await serve(".:PORT {\n    bind 127.0.0.1\n" + stanza(kubeconfig) + "}\n")
    handler = k.handler("kubernetes")
    await k.query("web.app.svc.cluster.local", "A")
    first = handler.generation
    await until(lambda: (kube.watchers == 3), "watches of Services, EndpointSlices and Namespaces")
    kube.expire_watches()
    await until(lambda: (handler.cluster.stats.relists == 1), "a relist")
    assert (await addresses(k, "web.app.svc.cluster.local")) == (dns.rcode.NOERROR, ["10.96.0.10"])
    assert handler.generation is not first and handler.generation.data is handler.cluster.index


async def test_servfail_until_the_first_sync_then_answers(serve: Serve, tmp_path: Path) -> None:
    kube = FakeKube(watch=True)
    await kube.start()
    try:
        kube.add(service("app", "web", cluster_ips=["10.96.0.10"]))
        kubeconfig = write_kubeconfig(tmp_path / "kc", {"east": kube})
        await kube.pause()  # unreachable from the start
        k = await serve(".:PORT {\n    bind 127.0.0.1\n" + stanza(kubeconfig, startup="200ms")
                        + "}\n")
        handler = k.handler("kubernetes")
        assert handler.readiness() == {"kubernetes:east": False}
        assert k.server.services.not_ready() == ["kubernetes:east"]
        assert (await k.query("web.app.svc.cluster.local", "A")).rcode() == dns.rcode.SERVFAIL
        assert (await k.query("cluster.local", "SOA")).rcode() == dns.rcode.SERVFAIL
        await kube.resume()
        await until(lambda: _is(k, "web.app.svc.cluster.local", ["10.96.0.10"]), "answers after the first sync")
        assert handler.readiness() == {"kubernetes:east": True}
        registry = cluster_registry(k.server.services.shared, k.server.services.metrics)
        assert registry.names() == ["east"] and registry.get("east") is handler.cluster
    finally:
        await kube.close()


async def test_metrics_of_the_clusters(kube: FakeKube, serve: Serve, tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kc", {"east": kube})
    k = await serve(".:PORT {\n    bind 127.0.0.1\n" + stanza(kubeconfig) + "}\n")
    await until(lambda: (kube.watchers == 3), "watches of Services, EndpointSlices and Namespaces")
    kube.drop_watches()
    handler = k.handler("kubernetes")
    await until(lambda: (handler.cluster.stats.restarts.get("services", 0) >= 1), "a watch restart")
    from prometheus_client import generate_latest

    text = generate_latest(k.server.services.metrics.registry).decode()
    assert 'interkube_kubernetes_sync_age_seconds{cluster="east"}' in text
    assert 'interkube_kubernetes_watch_restarts_total{cluster="east",resource="services"}' in text
    assert 'interkube_kubernetes_synced{cluster="east"} 1.0' in text
    assert 'interkube_kubernetes_relists_total{cluster="east"} 0.0' in text

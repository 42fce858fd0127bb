"""One cluster failing: left out of the answers (and counted), never holding the others back.

West is read live from a fake API with watches (and the MCS CRDs); east and central.eu from
snapshot files.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from prometheus_client import generate_latest

from interkube.kube.cluster import Cluster
from interkube.kube.registry import ClusterRegistry
from testkit.fakekube import (
    DEFAULT_TYPES,
    SERVICE_EXPORT,
    SERVICE_IMPORT,
    FakeKube,
    endpoint_slice,
    write_kubeconfig,
)
from testkit.waiting import until

from clusterset_data import MCS, cluster_objects, corefile, export

Running = Any  # tests/plugins/conftest.py's Running: a server in the test's loop
Serve = Callable[[str], Awaitable[Running]]

UNION = """    clusterset cluster.union {
        local east
        policy all
    }
"""
DB_ALL = {"10.244.1.40", "10.244.2.40", "10.244.2.41", "10.244.3.40"}
DB_WITHOUT_WEST = {"10.244.1.40", "10.244.3.40"}


def addresses(msg: dns.message.Message) -> set[str]:
    return {rd.address for rrset in msg.answer if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
            for rd in rrset}


@pytest.fixture
async def west() -> AsyncIterator[FakeKube]:
    async with FakeKube(watch=True, types=(*DEFAULT_TYPES, SERVICE_EXPORT, SERVICE_IMPORT)) as fake:
        fake.add_all(cluster_objects("west"))
        yield fake


async def start(serve: Serve, snapshots: dict[str, Path], west: FakeKube, tmp_path: Path) -> Running:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"west": west})
    return await serve(corefile(snapshots, UNION + MCS, live={"west": f"{kubeconfig} west"}))


def metrics(k: Running) -> str:
    return generate_latest(k.server.services.metrics.registry).decode()


async def test_an_unreachable_cluster_is_left_out_and_counted(serve: Serve, snapshots: dict[str, Path],
                                                             west: FakeKube, tmp_path: Path) -> None:
    k = await start(serve, snapshots, west, tmp_path)
    handler = k.handler("clusterset")
    assert addresses(await k.query("db.shop.svc.cluster.union", "A")) == DB_ALL
    await west.pause()
    await until(lambda: handler.registry.get("west").down is not None, "west noticed unreachable")
    assert handler.readiness() == {"clusterset:cluster.union": True}  # a look at the state changes nothing
    # The others answer; west's own endpoint names cannot be answered by anyone else.
    assert addresses(await k.query("db.shop.svc.cluster.union", "A")) == DB_WITHOUT_WEST
    assert addresses(await k.query("db-0.east.db.shop.svc.cluster.union", "A")) == {"10.244.1.40"}
    assert (await k.query("db-0.west.db.shop.svc.cluster.union", "A")).rcode() == dns.rcode.SERVFAIL
    # api is ready only in west: without it no cluster has a ready endpoint, and a remote
    # ClusterIP is no answer: the name exists (central has the Service) but has no address.
    api = await k.query("api.shop.svc.cluster.union", "A")
    assert api.rcode() == dns.rcode.NOERROR and not api.answer
    # MCS: east's ServiceImport still gives front's clusterset IP (central exports it, ready).
    assert addresses(await k.query("front.mcs.svc.clusterset.local", "A")) == {"10.200.0.10"}
    text = metrics(k)
    assert ('interkube_clusterset_cluster_left_out_total'
            '{cluster="west",reason="unreachable",zone="cluster.union."}') in text
    assert 'interkube_clusterset_cluster_answering{cluster="west",zone="cluster.union."} 0.0' in text
    assert k.server.services.not_ready() == []  # west synced once; the clusterset still answers
    await west.resume()
    await until(lambda: handler.registry.get("west").down is None, "west reachable again")
    assert addresses(await k.query("db.shop.svc.cluster.union", "A")) == DB_ALL


async def test_a_cluster_that_never_synced_is_left_out(serve: Serve, snapshots: dict[str, Path],
                                                      west: FakeKube, tmp_path: Path) -> None:
    await west.pause()
    k = await start(serve, snapshots, west, tmp_path)
    assert addresses(await k.query("db.shop.svc.cluster.union", "A")) == DB_WITHOUT_WEST
    assert (await k.query("db-1.west.db.shop.svc.cluster.union", "A")).rcode() == dns.rcode.SERVFAIL
    assert 'cluster="west",reason="unsynced"' in metrics(k)
    # Its own stanza is not ready; the clusterset is (it answers from the other two).
    assert k.server.services.not_ready() == ["kubernetes:west"]
    await west.resume()
    await until(lambda: k.handler("clusterset").registry.get("west").synced, "west's first sync")
    assert addresses(await k.query("db.shop.svc.cluster.union", "A")) == DB_ALL


async def test_a_watch_event_drops_only_the_answers_that_read_it(serve: Serve, snapshots: dict[str, Path],
                                                                west: FakeKube, tmp_path: Path) -> None:
    k = await start(serve, snapshots, west, tmp_path)
    handler = k.handler("clusterset")
    assert addresses(await k.query("api.shop.svc.cluster.union", "A")) == {"10.244.2.20"}
    assert addresses(await k.query("web.shop.svc.cluster.union", "A")) == {"10.96.1.10", "10.244.2.5", "10.244.2.6",
                                                                          "10.244.3.5"}
    west.add(endpoint_slice("shop", "api-w", "api", [{"ip": "10.244.2.20"}, {"ip": "10.244.2.21"}]))

    async def api_grew() -> bool:
        return addresses(await k.query("api.shop.svc.cluster.union", "A")) == {"10.244.2.20", "10.244.2.21"}

    await until(api_grew, "west's new api endpoint in the answer")
    built = handler.built
    await k.query("web.shop.svc.cluster.union", "A")
    assert handler.built == built  # web read nothing the event changed: still a template
    # MCS: exporting west's hidden Service makes the name appear (its ServiceExport is read).
    assert (await k.query("hidden.mcs.svc.clusterset.local", "A")).rcode() == dns.rcode.NXDOMAIN
    west.add(export("mcs", "hidden"))

    async def exported() -> bool:
        return addresses(await k.query("hidden.mcs.svc.clusterset.local", "A")) == {"10.244.2.70"}

    await until(exported, "west's export of hidden")


async def test_servfail_only_when_no_cluster_can_answer(serve: Serve, snapshots: dict[str, Path],
                                                       tmp_path: Path) -> None:
    zone = tmp_path / "fallback.db"
    zone.write_text("$ORIGIN cluster.ft.\n@ 30 IN SOA ns hostmaster 1 7200 1800 86400 30\n"
                    "web.shop.svc 30 IN A 192.0.2.80\nnope.shop.svc 30 IN A 192.0.2.81\n")
    k = await serve(corefile(snapshots, UNION + f"""    clusterset cluster.ft {{
        local east
        fallthrough
    }}
    file {zone} cluster.ft
"""))
    handler = k.handler("clusterset")
    assert (await k.query("nope.shop.svc.cluster.union", "A")).rcode() == dns.rcode.NXDOMAIN
    # fallthrough: a name no cluster has goes to the next plugin.
    assert addresses(await k.query("nope.shop.svc.cluster.ft", "A")) == {"192.0.2.81"}
    for path in snapshots.values():
        path.unlink()
    for name in ("east", "west", "central.eu"):
        cluster = handler.registry.get(name)
        await cluster.source.check(cluster)
        assert cluster.down is not None
    for name in ("web.shop.svc.cluster.union", "nope.shop.svc.cluster.union", "cluster.union"):
        assert (await k.query(name, "A")).rcode() == dns.rcode.SERVFAIL, name
    assert addresses(await k.query("web.shop.svc.cluster.ft", "A")) == {"192.0.2.80"}  # fallthrough
    assert not handler.readiness()["clusterset:cluster.union"]
    text = metrics(k)
    for name in ("east", "west", "central.eu"):
        assert f'interkube_clusterset_cluster_left_out_total{{cluster="{name}",reason="unreachable",' \
               f'zone="cluster.union."}} 3.0' in text


def test_clusters_tell_when_they_go_down_and_come_back() -> None:
    # What lets the clusterset check a flag per query instead of every cluster's state.
    class Files:
        key, description = ("files",), "files"

    cluster = Cluster("west", Files())  # type: ignore[arg-type]
    flips: list[str | None] = []
    cluster.subscribe_state(lambda: flips.append(cluster.down))
    cluster.lost("list failed", "list")
    cluster.lost("watch failed", "services")  # still down: no new flip
    cluster.contact("list")
    cluster.contact("services")
    cluster.contact("services")
    assert flips == ["list failed", None]
    registry = ClusterRegistry()
    before = registry.version
    registry.publish(cluster)
    assert registry.get("west") is cluster and registry.version != before

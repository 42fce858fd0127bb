"""interkube's kubernetes plugin against a real kube-apiserver: answers follow creates, updates
and deletes; an API server restart and an etcd compaction are survived with a relist; an error
event in a watch stream (not a 410) leads to a relist too; RBAC refusals are named.

The server runs in the test's event loop (its cluster's counters can be read); every wait polls
for an answer with a deadline that only bounds a failure, never measures time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.rcode
import pytest
from lightkube import Client
from lightkube.resources.core_v1 import Service
from lightkube.resources.discovery_v1 import EndpointSlice
from lightkube.types import PatchType

from interkube.kube.cluster import Cluster
from interkube.kube.live import LiveSource
from testkit.kubeapi import KubeAPI, KubeObjects
from testkit.servers import (
    aquery,
    free_port,
    in_process,
    interkube_process,
    process_output,
    query,
)
from testkit.waiting import until, wait_until

pytestmark = pytest.mark.peers

ZONE = "cluster.local"
WAIT = 60.0  # bounds a failure only


@dataclass
class Live:
    """interkube serving one kubeconfig in this event loop."""

    server: Any
    port: int

    @property
    def handler(self) -> Any:
        return next(h for h in self.server.instance.built.handlers if h.plugin == "kubernetes")

    @property
    def cluster(self) -> Cluster:
        return self.handler.cluster  # type: ignore[no-any-return]

    async def ask(self, name: str, rdtype: str = "A") -> tuple[str, list[str]]:
        """(rcode, sorted record texts of the answer section)."""
        msg = await aquery(name, rdtype, self.port)
        return dns.rcode.to_text(msg.rcode()), sorted(rd.to_text() for rrset in msg.answer for rd in rrset)

    async def until(self, name: str, rdtype: str, expected: tuple[str, list[str]], what: str,
                    timeout: float = WAIT) -> None:
        """Poll until the answer is ``expected``; fail naming ``what`` and the last answer."""
        got: tuple[str, list[str]] | None = None

        async def answered() -> bool:
            nonlocal got
            got = await self.ask(name, rdtype)
            return got == expected

        await until(answered, lambda: f"{what}: {name} {rdtype} is {got}, not {expected}", timeout)


def corefile(kubeconfig: Path, port: int, extra: str = "") -> str:
    return f"""{ZONE}:{port} in-addr.arpa:{port} {{
    bind 127.0.0.1
    kubernetes {ZONE} in-addr.arpa {{
        kubeconfig {kubeconfig}
        pods verified
        startup_timeout 30s
{extra}    }}
}}
"""


@contextlib.asynccontextmanager
async def live(kubeconfig: Path) -> AsyncIterator[Live]:
    port = free_port()
    async with in_process(corefile(kubeconfig, port)) as server:
        yield Live(server, port)


def svc(ns: str, name: str) -> str:
    return f"{name}.{ns}.svc.{ZONE}"


NXDOMAIN: tuple[str, list[str]] = ("NXDOMAIN", [])
NODATA: tuple[str, list[str]] = ("NOERROR", [])


# --- creates, updates, deletes -----------------------------------------------------------------


async def test_creates_updates_and_deletes_show_up_in_answers(
        kube_api: KubeAPI, kube: KubeObjects, kube_client: Client, kube_ns: str) -> None:
    ns = kube_ns
    async with live(kube_api.kubeconfig) as k:
        # Created after the first list: the watches bring them.
        web = kube.service(ns, "web", ports=[("http", 80, "TCP")])
        ip = web.spec.clusterIP
        await k.until(svc(ns, "web"), "A", ("NOERROR", [ip]), "a created Service")
        ptr = ".".join(reversed(ip.split("."))) + ".in-addr.arpa"
        await k.until(ptr, "PTR", ("NOERROR", [svc(ns, "web") + "."]), "its PTR")
        assert await k.ask(f"_metrics._tcp.{svc(ns, 'web')}", "SRV") == NXDOMAIN

        # An updated Service: a new named port gets its SRV record.
        kube_client.patch(Service, "web", {"spec": {"ports": [
            {"name": "http", "port": 80, "protocol": "TCP"},
            {"name": "metrics", "port": 9090, "protocol": "TCP"}]}},
            namespace=ns, patch_type=PatchType.MERGE)
        await k.until(f"_metrics._tcp.{svc(ns, 'web')}", "SRV",
                      ("NOERROR", [f"0 100 9090 {svc(ns, 'web')}."]), "the new port's SRV")

        # Headless: endpoints appear, turn not ready, and go with their slice.
        kube.headless_service(ns, "hl")
        await k.until(svc(ns, "hl"), "A", NXDOMAIN, "a headless Service without endpoints")
        kube.endpoint_slice(ns, "hl-a", service="hl", addresses=[
            {"addresses": ["10.1.0.5"], "conditions": {"ready": True}, "hostname": "pet-0"},
            "10.1.0.6"])
        await k.until(svc(ns, "hl"), "A", ("NOERROR", ["10.1.0.5", "10.1.0.6"]), "its endpoints")
        await k.until(f"pet-0.{svc(ns, 'hl')}", "A", ("NOERROR", ["10.1.0.5"]), "an endpoint's name")
        kube_client.patch(EndpointSlice, "hl-a", {"endpoints": [
            {"addresses": ["10.1.0.5"], "conditions": {"ready": False}, "hostname": "pet-0"},
            {"addresses": ["10.1.0.6"], "conditions": {"ready": True}}]},
            namespace=ns, patch_type=PatchType.MERGE)
        await k.until(svc(ns, "hl"), "A", ("NOERROR", ["10.1.0.6"]), "a not-ready endpoint left out")
        await k.until(f"pet-0.{svc(ns, 'hl')}", "A", NXDOMAIN, "the not-ready endpoint's name gone")
        kube_client.delete(EndpointSlice, "hl-a", namespace=ns)
        await k.until(svc(ns, "hl"), "A", NXDOMAIN, "the deleted slice's endpoints gone")

        # ExternalName: its target changes.
        kube.external_name_service(ns, "ext", "one.example.invalid")
        await k.until(svc(ns, "ext"), "CNAME", ("NOERROR", ["one.example.invalid."]), "a CNAME")
        kube_client.patch(Service, "ext", {"spec": {"externalName": "two.example.invalid"}},
                          namespace=ns, patch_type=PatchType.MERGE)
        await k.until(svc(ns, "ext"), "CNAME", ("NOERROR", ["two.example.invalid."]), "the new target")

        # Pods (pods verified): a pod's name answers once it has its address.
        kube.pod(ns, "p")
        name = f"10-1-0-9.{ns}.pod.{ZONE}"
        assert await k.ask(name) == NXDOMAIN
        kube.set_pod_ips(ns, "p", ["10.1.0.9", "fd00:10:1::9"])
        await k.until(name, "A", ("NOERROR", ["10.1.0.9"]), "the pod's address")
        await k.until(f"fd00-10-1--9.{ns}.pod.{ZONE}", "AAAA", ("NOERROR", ["fd00:10:1::9"]),
                      "the pod's second address")

        # Deletes.
        kube_client.delete(Service, "web", namespace=ns)
        await k.until(svc(ns, "web"), "A", NXDOMAIN, "the deleted Service gone")
        await k.until(ptr, "PTR", NXDOMAIN, "its PTR gone")


async def test_namespaces_come_and_go(kube_api: KubeAPI, kube: KubeObjects) -> None:
    # A namespace exists for DNS as soon as it exists in the API, Services or not (as CoreDNS).
    ns = f"ns-live-{secrets.token_hex(3)}"
    async with live(kube_api.kubeconfig) as k:
        assert await k.ask(f"{ns}.svc.{ZONE}") == NXDOMAIN
        kube.namespace(ns)
        try:
            await k.until(f"{ns}.svc.{ZONE}", "A", NODATA, "an empty namespace (NODATA)")
            await k.until(f"{ns}.pod.{ZONE}", "A", NODATA, "its pod subtree")
        finally:
            await asyncio.to_thread(kube_api.delete_namespace, ns)
        await k.until(f"{ns}.svc.{ZONE}", "A", NXDOMAIN, "the deleted namespace gone")


# --- restarts and compaction -------------------------------------------------------------------


def service_key(namespace: str, name: str) -> str:
    """Where kube-apiserver keeps a Service in etcd (its default storage prefix)."""
    return f"/registry/services/specs/{namespace}/{name}"


async def test_apiserver_restart_and_etcd_compaction_are_survived_with_a_relist(
        kube_api: KubeAPI, kube: KubeObjects, kube_ns: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "interkube.plugin.kubernetes")
    ns = kube_ns
    keep = kube.service(ns, "keep").spec.clusterIP
    gone = kube.service(ns, "gone").spec.clusterIP
    async with live(kube_api.kubeconfig) as k:
        await k.until(svc(ns, "keep"), "A", ("NOERROR", [keep]), "the first list")
        await k.until(svc(ns, "gone"), "A", ("NOERROR", [gone]), "the first list")
        relists = k.cluster.stats.relists

        await asyncio.to_thread(kube_api.stop_apiserver)
        # The API is gone: answers go on from the last data.
        assert await k.ask(svc(ns, "keep")) == ("NOERROR", [keep])
        # A delete no watch will ever report: made in etcd behind the API server's back, its
        # history then compacted away. Only a new list can see it.
        kube_api.etcd.delete(service_key(ns, "gone"))
        kube_api.compact_etcd()
        assert await k.ask(svc(ns, "gone")) == ("NOERROR", [gone])
        # Started from this thread, not a worker thread: the peers die with the thread that
        # started them (PR_SET_PDEATHSIG), and a worker thread ends with the test's loop.
        kube_api.start_apiserver()

        await until(lambda: k.cluster.stats.relists > relists, "a relist after the restart", WAIT)
        await k.until(svc(ns, "gone"), "A", NXDOMAIN, "the Service deleted behind the watch gone")
        assert await k.ask(svc(ns, "keep")) == ("NOERROR", [keep])
        # And the watches run again: a new Service shows up.
        after = kube.service(ns, "after").spec.clusterIP
        await k.until(svc(ns, "after"), "A", ("NOERROR", [after]), "a Service created after the restart")
    assert any("410" in r.getMessage() and "listing again" in r.getMessage() for r in caplog.records)


@pytest.fixture(scope="module")
def uncached_api(tmp_path_factory: pytest.TempPathFactory, kube_api: KubeAPI) -> Iterator[KubeAPI]:
    """A second API server where nothing interkube watches has a watch cache: those watches
    are served by etcd itself, as with --watch-cache=false."""
    api = KubeAPI(tmp_path_factory.mktemp("uncached"), Path(kube_api.apiserver.argv[0]),
                  Path(kube_api.etcd.process.argv[0]), name="uncached",
                  uncached_resources=("configmaps", "services", "endpointslices.discovery.k8s.io",
                                      "namespaces", "pods"))
    try:
        api.start()
        yield api
    finally:
        api.stop()


async def test_a_watch_error_event_other_than_410_is_followed_by_a_relist(
        uncached_api: KubeAPI, caplog: pytest.LogCaptureFixture) -> None:
    # A watch that starts exactly at etcd's compaction revision is allowed by etcd, but its first
    # event has lost its previous value, and kube-apiserver ends the watch with an ERROR event
    # (500, "PrevKv=nil") rather than a 410. Starting the watch again from the same version
    # meets the same error forever; a relist is the way out (as client-go's reflector does).
    caplog.set_level(logging.INFO, "interkube.plugin.kubernetes")
    api = uncached_api
    client = api.client()
    kube = KubeObjects(client)
    ns = kube.namespace(f"prevkv-{secrets.token_hex(3)}")
    one = kube.service(ns, "one").spec.clusterIP
    two = kube.service(ns, "two").spec.clusterIP
    try:
        async with live(api.kubeconfig) as k:
            await k.until(svc(ns, "two"), "A", ("NOERROR", [two]), "the first list")
            source = k.cluster.source
            assert isinstance(source, LiveSource)
            relists = k.cluster.stats.relists

            await asyncio.to_thread(api.stop_apiserver)
            # Behind the API server's back: rewrite Service "one" (its first event from here is
            # a change, which needs its previous value) and delete "two"; compact at the rewrite.
            value, _ = api.etcd.get(service_key(ns, "one")) or (b"", 0)
            assert value
            rewritten = api.etcd.put(service_key(ns, "one"), value)
            api.etcd.delete(service_key(ns, "two"))
            api.etcd.compact(rewritten)
            # As if the watches had been told (by a bookmark) that nothing of theirs changed up
            # to just before the rewrite: they start again exactly at the compaction revision.
            for resource in source.versions:
                source.versions[resource] = str(rewritten - 1)
            api.start_apiserver()  # from this thread (see the test above)

            await k.until(svc(ns, "two"), "A", NXDOMAIN, "the deleted Service gone after a relist")
            assert k.cluster.stats.relists > relists
            assert await k.ask(svc(ns, "one")) == ("NOERROR", [one])
    finally:
        await asyncio.to_thread(api.delete_namespace, ns)
        client.close()
    failed = [r.getMessage() for r in caplog.records if "error event 500" in r.getMessage()]
    assert failed and "PrevKv=nil" in failed[0] and "listing again" in failed[0], failed


# --- RBAC --------------------------------------------------------------------------------------


def _ready(port: int) -> tuple[int, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{port}/ready", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_rbac_refusal_names_the_resource_and_the_verb(kube_api: KubeAPI, kube: KubeObjects,
                                                       kube_ns: str, tmp_path: Path) -> None:
    # Services may be read, EndpointSlices not: the cluster never syncs, and says why.
    user = f"dns-{secrets.token_hex(3)}"
    kubeconfig = kube_api.restricted_kubeconfig(user)
    kube.service(kube_ns, "web")
    port, ready_port = free_port(), free_port()
    path = tmp_path / "Corefile"
    path.write_text(f"""{ZONE}:{port} {{
    bind 127.0.0.1
    ready 127.0.0.1:{ready_port}
    kubernetes {ZONE} {{
        kubeconfig {kubeconfig}
        startup_timeout 1s
    }}
}}
""")
    with interkube_process(path, port) as proc:
        wait_until(lambda: "RBAC refused" in process_output(proc), "the refusal in the log", WAIT)
        assert query(svc(kube_ns, "web"), "A", port).rcode() == dns.rcode.SERVFAIL
        status, body = _ready(ready_port)
        assert (status, body.split()) == (503, ["kubernetes:local"])
        out = process_output(proc)
    [line] = [line for line in out.splitlines() if "RBAC refused" in line]
    assert line.startswith("[ERROR] plugin/kubernetes: cluster local, context interkube-test: ")
    assert 'RBAC refused verb "list" on resource endpointslices (discovery.k8s.io/v1) cluster-wide' in line
    # The API server's own words name the user.
    assert re.search(rf'User "{user}" cannot list resource "endpointslices" in API group '
                     r'"discovery.k8s.io" at the cluster scope', line), line
    assert "SERVFAIL until a first sync" in line


def test_without_namespaces_rbac_a_cluster_still_syncs_and_says_what_it_loses(
        kube_api: KubeAPI, kube: KubeObjects, kube_ns: str, tmp_path: Path) -> None:
    # Namespaces are optional (a role written for older interkube, or narrower than CoreDNS's):
    # without them the cluster serves, and warns once about empty namespaces.
    user = f"dns-{secrets.token_hex(3)}"
    kubeconfig = kube_api.restricted_kubeconfig(user, rules=[
        {"apiGroups": [""], "resources": ["services"], "verbs": ["list", "watch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
    ])
    ip = kube.service(kube_ns, "web").spec.clusterIP
    port = free_port()
    path = tmp_path / "Corefile"
    path.write_text(f"{ZONE}:{port} {{\n    bind 127.0.0.1\n    kubernetes {ZONE} {{\n"
                    f"        kubeconfig {kubeconfig}\n    }}\n}}\n")
    with interkube_process(path, port) as proc:
        wait_until(lambda: [r.to_text() for rs in query(svc(kube_ns, "web"), "A", port).answer for r in rs] == [ip],
                   "the Service answered", WAIT)
        out = process_output(proc)
    assert out.count("cannot list namespaces (HTTP 403)") == 1, out
    assert "RBAC refused" not in out


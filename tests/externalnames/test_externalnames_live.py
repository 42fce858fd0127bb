"""``interkube externalnames`` between two real kube-apiservers (``kube_api`` as the source
cluster ``a``, ``kube_api_b`` as the target ``b``, one kubeconfig with both contexts): create,
update, delete, a hand-made Service in the way, --dry-run, --once, a restart of the source API
with a delete it never reported, leader election between two replicas, and the target's
interkube answering the ExternalName chain from the source's data."""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.rcode
import dns.rdatatype
import httpx2
import pytest
from lightkube.resources.core_v1 import Service
from lightkube.types import PatchType

from testkit.kubeapi import KubeAPI, KubeObjects
from testkit.servers import aaddresses, aquery, free_port, in_process, interkube_command, process_output
from testkit.waiting import until, wait_until

pytestmark = pytest.mark.peers

WAIT = 60.0
MANAGED = {"app.kubernetes.io/managed-by": "interkube-externalnames",
           "externalnames.interkube.io/source-cluster": "a"}


@pytest.fixture
def b_objects(kube_api_b: KubeAPI) -> Iterator[KubeObjects]:
    client = kube_api_b.client()
    try:
        yield KubeObjects(client)
    finally:
        client.close()


@pytest.fixture
def b_ns(kube_api_b: KubeAPI, b_objects: KubeObjects, kube_ns: str) -> Iterator[str]:
    """The test's namespace in the target cluster too (same name as in the source)."""
    b_objects.namespace(kube_ns)
    yield kube_ns
    kube_api_b.delete_namespace(kube_ns)


def target(api: KubeAPI, ns: str) -> dict[str, dict[str, Any]]:
    """The target's Services of ``ns`` by name."""
    resp = api.http().get(f"/api/v1/namespaces/{ns}/services")
    resp.raise_for_status()
    return {item["metadata"]["name"]: item for item in resp.json()["items"]}


def external(api: KubeAPI, ns: str) -> dict[str, tuple[str, list[tuple[str, int, str]]]]:
    """name -> (externalName, ports) of the controller's Services in ``ns``."""
    out = {}
    for name, svc in target(api, ns).items():
        labels = svc["metadata"].get("labels") or {}
        if all(labels.get(k) == v for k, v in MANAGED.items()):
            ports = [(p.get("name", ""), p["port"], p["protocol"]) for p in svc["spec"].get("ports") or ()]
            out[name] = (svc["spec"]["externalName"], ports)
    return out


@contextlib.contextmanager
def controller(kubeconfig: Path, *args: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``interkube externalnames --source a --target b --watch`` with /metrics on a port of its own."""
    port = free_port()
    with interkube_command("externalnames", "--kubeconfig", str(kubeconfig), "--source", "a", "--target", "b",
                           "--http", f"127.0.0.1:{port}", *args) as proc:
        yield proc, port


def logged(proc: subprocess.Popen[bytes], line: str) -> str | None:
    """The process's output once it holds ``line``."""
    text = process_output(proc)
    return text if line in text else None


def run_once(kubeconfig: Path, *args: str) -> str:
    done = subprocess.run(["python3", "-m", "interkube", "externalnames", "--kubeconfig", str(kubeconfig),
                           "--source", "a", "--target", "b", "--once", *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def metric(port: int, name: str) -> float | None:
    """A sample of the controller's /metrics (None while it does not answer yet)."""
    try:
        text = httpx2.get(f"http://127.0.0.1:{port}/metrics", timeout=5, trust_env=False).text
    except httpx2.HTTPError:
        return None
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def target_dns(port: int, kubeconfig: Path, more: str = "") -> str:
    """The target cluster's interkube: its own data in cluster.local, the source's in cluster.a
    (and ``more`` plugins)."""
    return f""".:{port} {{
    bind 127.0.0.1
    kubernetes cluster.local {{
        kubeconfig {kubeconfig} b
        cluster b
    }}
    kubernetes cluster.a {{
        kubeconfig {kubeconfig} a
        cluster a
    }}
    {more}
}}
"""


def db_slice(a: KubeObjects, ns: str, ready: dict[str, bool], name: str = "db-x") -> Any:
    """The headless Service db's EndpointSlice: pods db-N at 10.244.0.1N with hostnames."""
    endpoints = [{"addresses": [f"10.244.0.1{host[-1]}"], "hostname": host, "conditions": {"ready": r},
                  "targetRef": {"kind": "Pod", "name": host}} for host, r in ready.items()]
    return a.endpoint_slice(ns, name, service="db", addresses=endpoints, ports=[("pg", 5432, "TCP")])


def test_services_and_ready_hosts_are_mirrored_kept_and_deleted(
        kube_api: KubeAPI, kube_api_b: KubeAPI, kube: KubeObjects, b_ns: str, two_clusters_kubeconfig: Path) -> None:
    ns = b_ns
    kube.service(ns, "web", ports=[("http", 80, "TCP")])
    kube.headless_service(ns, "db", ports=[("pg", 5432, "TCP")])
    db_slice(kube, ns, {"db-0": True, "db-1": True, "db-2": False})
    with controller(two_clusters_kubeconfig, "--namespace", ns) as (proc, port):
        expected = {
            "web": (f"web.{ns}.svc.cluster.a", [("http", 80, "TCP")]),
            "db": (f"db.{ns}.svc.cluster.a", [("pg", 5432, "TCP")]),
            "db-0": (f"db-0.db.{ns}.svc.cluster.a", [("pg", 5432, "TCP")]),
            "db-1": (f"db-1.db.{ns}.svc.cluster.a", [("pg", 5432, "TCP")]),
        }
        wait_until(lambda: external(kube_api_b, ns) == expected, lambda: f"mirrored: {external(kube_api_b, ns)}\n"
                   + process_output(proc), WAIT)
        assert target(kube_api_b, ns)["db-0"]["metadata"]["annotations"] == {
            "externalnames.interkube.io/origin": f"a/{ns}/db/db-0"}
        assert httpx2.get(f"http://127.0.0.1:{port}/ready", trust_env=False).status_code == 200

        # Its own Services deleted or changed by hand in the target: put right from the target's
        # watch (the next full pass is minutes away).
        kube_api_b.http().delete(f"/api/v1/namespaces/{ns}/services/db-0").raise_for_status()
        kube_api_b.http().patch(f"/api/v1/namespaces/{ns}/services/db", json={"spec": {"externalName": "x.example"}},
                                headers={"Content-Type": "application/merge-patch+json"}).raise_for_status()
        wait_until(lambda: external(kube_api_b, ns) == expected, lambda: f"put right: {external(kube_api_b, ns)}\n"
                   + process_output(proc), WAIT)

        # A port changed in the source: updated in the target.
        kube.client.patch(Service, "web", {"spec": {"ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}},
                          namespace=ns, patch_type=PatchType.MERGE)
        wait_until(lambda: external(kube_api_b, ns)["web"][1] == [("http", 8080, "TCP")], "the port followed", WAIT)

        # db-1 no longer ready, db-2 ready: the per-host Services follow.
        kube_api.http().delete(f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices/db-x").raise_for_status()
        db_slice(kube, ns, {"db-0": True, "db-1": False, "db-2": True}, name="db-y")
        wait_until(lambda: sorted(external(kube_api_b, ns)) == ["db", "db-0", "db-2", "web"],
                   lambda: f"hosts followed readiness: {sorted(external(kube_api_b, ns))}", WAIT)

        # The source Service deleted: its ExternalName too.
        kube_api.http().delete(f"/api/v1/namespaces/{ns}/services/web").raise_for_status()
        wait_until(lambda: "web" not in target(kube_api_b, ns), "web deleted in the target", WAIT)
        # The line is written once the API has answered the delete, which the target may show first.
        out = wait_until(lambda: logged(proc, f"deleted Service {ns}/web"), "the delete logged", WAIT)
    assert f"created Service {ns}/web: ExternalName web.{ns}.svc.cluster.a (ports http 80/TCP)" in out
    assert f"updated Service {ns}/web" in out
    assert f"deleted Service {ns}/db-1" in out
    assert f"deleted Service {ns}/web" in out


def test_a_hand_made_service_is_a_conflict_left_alone(
        kube_api: KubeAPI, kube_api_b: KubeAPI, kube: KubeObjects, b_objects: KubeObjects, b_ns: str,
        two_clusters_kubeconfig: Path) -> None:
    ns = b_ns
    kube.service(ns, "web")
    kube.service(ns, "api")
    mine = b_objects.service(ns, "web", ports=[("http", 81, "TCP")])
    with controller(two_clusters_kubeconfig, "--namespace", ns) as (proc, port):
        wait_until(lambda: "api" in external(kube_api_b, ns), lambda: process_output(proc), WAIT)
        wait_until(lambda: metric(port, "interkube_externalnames_conflicts") == 1.0,
                   "one conflict counted", WAIT)
        # The source's web deleted: the hand-made one stays all the same.
        kube_api.http().delete(f"/api/v1/namespaces/{ns}/services/web").raise_for_status()
        kube_api.http().delete(f"/api/v1/namespaces/{ns}/services/api").raise_for_status()
        wait_until(lambda: "api" not in target(kube_api_b, ns), "api deleted", WAIT)
        # No longer wanted, the hand-made Service is no conflict any more.
        wait_until(lambda: metric(port, "interkube_externalnames_conflicts") == 0.0,
                   "the conflict gone with the source Service", WAIT)
        out = process_output(proc)
    web = target(kube_api_b, ns)["web"]
    assert web["metadata"]["resourceVersion"] == mine.metadata.resourceVersion
    assert web["spec"]["type"] == "ClusterIP"
    assert f"conflict Service {ns}/web: it exists, not made by interkube externalnames; left alone" in out


def test_a_conflict_deleted_by_its_owner_is_replaced_before_the_resync(
        kube: KubeObjects, kube_api_b: KubeAPI, b_objects: KubeObjects, b_ns: str,
        two_clusters_kubeconfig: Path) -> None:
    ns = b_ns
    kube.service(ns, "web")
    b_objects.service(ns, "web", ports=[("http", 81, "TCP")])
    # A resync far away: only the re-reading of the conflict can notice the delete.
    with controller(two_clusters_kubeconfig, "--namespace", ns, "--resync", "1h",
                    "--conflict-recheck", "1s") as (proc, port):
        wait_until(lambda: metric(port, "interkube_externalnames_conflicts") == 1.0,
                   lambda: process_output(proc), WAIT)
        kube_api_b.http().delete(f"/api/v1/namespaces/{ns}/services/web").raise_for_status()
        wait_until(lambda: "web" in external(kube_api_b, ns), lambda: process_output(proc), WAIT)
        assert metric(port, "interkube_externalnames_conflicts") == 0.0
        out = process_output(proc)
    assert f"Service {ns}/web in conflict is gone from the target; planning again" in out
    assert f"created Service {ns}/web: ExternalName web.{ns}.svc.cluster.a" in out


def test_dry_run_prints_every_change_and_makes_none_then_once_makes_them(
        kube_api_b: KubeAPI, kube: KubeObjects, b_objects: KubeObjects, b_ns: str,
        two_clusters_kubeconfig: Path) -> None:
    ns = b_ns
    kube.service(ns, "web")
    kube.service(ns, "api")
    kube.service(ns, "new")
    b_objects.service(ns, "api")  # hand-made
    b_objects.create({"apiVersion": "v1", "kind": "Service",
                      "metadata": {"name": "web", "namespace": ns, "labels": MANAGED,
                                   "annotations": {"externalnames.interkube.io/origin": f"a/{ns}/web"}},
                      "spec": {"type": "ExternalName", "externalName": "stale.example"}})
    b_objects.create({"apiVersion": "v1", "kind": "Service",
                      "metadata": {"name": "old", "namespace": ns, "labels": MANAGED},
                      "spec": {"type": "ExternalName", "externalName": f"old.{ns}.svc.cluster.a"}})
    before = {n: s["metadata"]["resourceVersion"] for n, s in target(kube_api_b, ns).items()}

    out = run_once(two_clusters_kubeconfig, "--namespace", ns, "--dry-run")
    lines = [line for line in out.splitlines() if not line.startswith("[")]
    assert lines == [
        f"conflict Service {ns}/api: it exists, not made by interkube externalnames; left alone (wanted "
        f"ExternalName api.{ns}.svc.cluster.a (ports http 80/TCP) for a/{ns}/api)",
        f"create Service {ns}/new: ExternalName new.{ns}.svc.cluster.a (ports http 80/TCP)",
        f"delete Service {ns}/old: made for the source is gone",
        f"update Service {ns}/web: ExternalName web.{ns}.svc.cluster.a (ports http 80/TCP) "
        "(was ExternalName stale.example)",
        "dry run: 1 to create, 1 to update, 1 to delete, 1 in conflict, 0 skipped; nothing changed",
    ]
    assert {n: s["metadata"]["resourceVersion"] for n, s in target(kube_api_b, ns).items()} == before

    run_once(two_clusters_kubeconfig, "--namespace", ns)
    assert external(kube_api_b, ns) == {n: (f"{n}.{ns}.svc.cluster.a", [("http", 80, "TCP")])
                                        for n in ("new", "web")}
    assert target(kube_api_b, ns)["api"]["spec"]["type"] == "ClusterIP"


def test_a_namespace_the_target_lacks_is_created_only_when_asked(
        kube_api_b: KubeAPI, kube: KubeObjects, kube_ns: str, two_clusters_kubeconfig: Path) -> None:
    ns = kube_ns
    kube.service(ns, "web")
    try:
        out = run_once(two_clusters_kubeconfig, "--namespace", ns)
        assert f"namespace {ns} does not exist in the target; its Services are not mirrored" in out
        assert kube_api_b.http().get(f"/api/v1/namespaces/{ns}").status_code == 404

        out = run_once(two_clusters_kubeconfig, "--namespace", ns, "--create-namespaces")
        assert f"created namespace {ns}" in out
        assert external(kube_api_b, ns) == {"web": (f"web.{ns}.svc.cluster.a", [("http", 80, "TCP")])}
    finally:
        kube_api_b.delete_namespace(ns)


def test_a_restart_of_the_source_api_is_followed_by_a_resync(
        kube_api: KubeAPI, kube_api_b: KubeAPI, kube: KubeObjects, b_ns: str, two_clusters_kubeconfig: Path) -> None:
    ns = b_ns
    kube.service(ns, "keep")
    kube.service(ns, "gone")
    with controller(two_clusters_kubeconfig, "--namespace", ns) as (proc, port):
        wait_until(lambda: sorted(external(kube_api_b, ns)) == ["gone", "keep"], lambda: process_output(proc), WAIT)
        kube_api.stop_apiserver()
        # A delete no watch will ever report: made in etcd behind the API server's back, its
        # history compacted away; only a relist after the restart can see it.
        kube_api.etcd.delete(f"/registry/services/specs/{ns}/gone")
        kube_api.compact_etcd()
        kube_api.start_apiserver()
        wait_until(lambda: sorted(external(kube_api_b, ns)) == ["keep"], lambda: process_output(proc), WAIT)
        kube.service(ns, "after")
        wait_until(lambda: sorted(external(kube_api_b, ns)) == ["after", "keep"], "a Service made after the "
                   "restart mirrored", WAIT)
        assert metric(port, 'interkube_kubernetes_relists_total{cluster="a"}') >= 1  # type: ignore[operator]


def test_of_replicas_with_a_lease_one_acts_and_another_takes_over(
        kube_api: KubeAPI, kube_api_b: KubeAPI, kube: KubeObjects, b_ns: str, two_clusters_kubeconfig: Path) -> None:
    ns = b_ns
    kube.service(ns, "first")
    lease = ("--namespace", ns, "--lease", f"{ns}/externalnames", "--lease-duration", "4s")
    with controller(two_clusters_kubeconfig, *lease, "--identity", "one") as (one, one_port), \
            controller(two_clusters_kubeconfig, *lease, "--identity", "two") as (two, two_port):
        wait_until(lambda: "first" in external(kube_api_b, ns), lambda: process_output(one) + process_output(two),
                   WAIT)

        def leaders() -> list[float | None]:
            return [metric(p, "interkube_externalnames_leader") for p in (one_port, two_port)]

        wait_until(lambda: sorted(leaders(), key=str) == [0.0, 1.0], lambda: f"one leader: {leaders()}", WAIT)
        leader, follower = (one, two) if leaders()[0] == 1.0 else (two, one)
        follower_port = two_port if follower is two else one_port
        assert metric(follower_port, 'interkube_externalnames_changes_total{action="create"}') == 0.0
        holder = kube_api_b.http().get(f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/externalnames")
        assert holder.json()["spec"]["holderIdentity"] == ("one" if leader is one else "two")

        leader.terminate()  # SIGTERM: it gives the Lease up
        leader.wait(30)
        wait_until(lambda: metric(follower_port, "interkube_externalnames_leader") == 1.0,
                   lambda: process_output(follower), WAIT)
        kube.service(ns, "second")
        wait_until(lambda: "second" in external(kube_api_b, ns), lambda: process_output(follower), WAIT)
        # Counted once the API has answered, which the target may show first.
        wait_until(lambda: metric(follower_port, 'interkube_externalnames_changes_total{action="create"}') == 1.0,
                   "the new leader's create counted", WAIT)

        # A leader that dies without giving the Lease up: a third replica takes over once the
        # Lease has not been renewed for its duration.
        with controller(two_clusters_kubeconfig, *lease, "--identity", "three") as (three, three_port):
            wait_until(lambda: metric(three_port, "interkube_externalnames_leader") == 0.0, "three standing by",
                       WAIT)
            follower.kill()
            follower.wait(30)
            wait_until(lambda: metric(three_port, "interkube_externalnames_leader") == 1.0,
                       lambda: process_output(three), WAIT)
            kube.service(ns, "third")
            wait_until(lambda: "third" in external(kube_api_b, ns), lambda: process_output(three), WAIT)


async def test_the_targets_interkube_answers_the_chain_from_the_sources_data(
        kube_api: KubeAPI, kube_api_b: KubeAPI, kube: KubeObjects, b_ns: str, two_clusters_kubeconfig: Path) -> None:
    ns = b_ns
    web = kube.service(ns, "web").spec.clusterIP
    kube.headless_service(ns, "db", ports=[("pg", 5432, "TCP")])
    db_slice(kube, ns, {"db-0": True})
    run_once(two_clusters_kubeconfig, "--namespace", ns)
    port = free_port()
    corefile = target_dns(port, two_clusters_kubeconfig)

    async def answer(name: str) -> tuple[str, list[str]]:
        msg = await aquery(name, "A", port)
        return dns.rcode.to_text(msg.rcode()), [f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)} {rd}"
                                                for rrset in msg.answer for rd in rrset]

    async with in_process(corefile):
        cname = f"web.{ns}.svc.cluster.local. CNAME web.{ns}.svc.cluster.a."
        async def synced() -> bool:
            return all([(await answer(name))[0] == "NOERROR" for name in (f"web.{ns}.svc.cluster.local",
                                                                          f"web.{ns}.svc.cluster.a")])

        await until(synced, "both clusters synced", WAIT)
        assert await answer(f"web.{ns}.svc.cluster.local") == ("NOERROR", [cname])
        assert await answer(f"web.{ns}.svc.cluster.a") == ("NOERROR", [f"web.{ns}.svc.cluster.a. A {web}"])
        assert await answer(f"db-0.{ns}.svc.cluster.local") == (
            "NOERROR", [f"db-0.{ns}.svc.cluster.local. CNAME db-0.db.{ns}.svc.cluster.a."])
        assert await answer(f"db-0.db.{ns}.svc.cluster.a") == (
            "NOERROR", [f"db-0.db.{ns}.svc.cluster.a. A 10.244.0.10"])


async def test_a_merged_zone_target_domain_is_answered_by_clusterset(
        kube: KubeObjects, b_ns: str, two_clusters_kubeconfig: Path) -> None:
    ns = b_ns
    kube.headless_service(ns, "db", ports=[("pg", 5432, "TCP")])
    db_slice(kube, ns, {"db-0": True, "db-1": True})
    out = run_once(two_clusters_kubeconfig, "--namespace", ns, "--target-domain", "cluster.all")
    assert f"created Service {ns}/db-0: ExternalName db-0.a.db.{ns}.svc.cluster.all" in out
    port = free_port()
    corefile = target_dns(port, two_clusters_kubeconfig, "clusterset cluster.all")
    async with in_process(corefile):
        async def synced() -> bool:
            return (await aaddresses(f"db.{ns}.svc.cluster.all", port))[0] == "NOERROR"

        await until(synced, "both clusters synced", WAIT)
        msg = await aquery(f"db-1.{ns}.svc.cluster.local", "A", port)
        assert [rrset.to_text() for rrset in msg.answer] == [
            f"db-1.{ns}.svc.cluster.local. 5 IN CNAME db-1.a.db.{ns}.svc.cluster.all."]
        assert await aaddresses(f"db-1.a.db.{ns}.svc.cluster.all", port) == ("NOERROR", ["10.244.0.11"])
        assert await aaddresses(f"db.{ns}.svc.cluster.all", port) == ("NOERROR", ["10.244.0.10", "10.244.0.11"])

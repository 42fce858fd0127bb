"""Smoke tests of the peer fixtures: the real API server and CoreDNS do what later suites rely on."""

from __future__ import annotations

import ipaddress
import json
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.flags
import dns.rcode
import dns.rdatatype
import pytest
from lightkube import ApiError, Client
from lightkube.resources.core_v1 import ConfigMap, Namespace, Pod, Service
from lightkube.resources.discovery_v1 import EndpointSlice
from lightkube.types import PatchType

from testkit.coredns import CoreDNS
from testkit.kubeapi import (
    SERVICE_CIDRS,
    KubeAPI,
    KubeObjects,
    ServiceExport,
    ServiceImport,
)
from testkit.peers import PEERS
from testkit.waiting import wait_until

pytestmark = pytest.mark.peers

V4_RANGE, V6_RANGE = (ipaddress.ip_network(c) for c in SERVICE_CIDRS)


def _is_gone(status: int, event: dict[str, Any] | None) -> bool:
    """410 Gone, whether sent as the HTTP status or as a watch ERROR event."""
    if status == 410:
        return True
    return (event is not None and event.get("type") == "ERROR"
            and event["object"].get("code") == 410)


def test_build_peers_loads_its_pins_without_the_package(tmp_path: Path) -> None:
    """scripts/build-peers reads the pins from testkit/peers.py by file path, from any directory,
    with neither interkube nor testkit importable (as on a machine that has only Go)."""
    script = Path(__file__).resolve().parents[2] / "scripts" / "build-peers"
    run = subprocess.run([sys.executable, "-I", "-S", str(script), "--help"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "--check" in run.stdout


# --- kube-apiserver --------------------------------------------------------------------------


def test_apiserver_is_the_pinned_version_with_dual_stack_service_ranges(kube_api: KubeAPI) -> None:
    http = kube_api.http()
    assert http.get("/readyz").text == "ok"
    assert http.get("/version").json()["gitVersion"] == PEERS["kube-apiserver"].version
    cidr = http.get("/apis/networking.k8s.io/v1/servicecidrs/kubernetes").json()
    assert cidr["spec"]["cidrs"] == list(SERVICE_CIDRS)


def test_every_kind_round_trips(kube: KubeObjects, kube_client: Client, kube_ns: str) -> None:
    ns = kube_ns
    kube.service(ns, "web", selector={"app": "web"})
    kube.headless_service(ns, "headless", ports=[(None, 5353, "UDP")])
    kube.external_name_service(ns, "alias", "target.example.invalid")
    kube.dual_stack_service(ns, "dual", ports=[("http", 80, "TCP"), ("dns", 53, "UDP")])
    kube.endpoint_slice(ns, "web-v4", service="web", addresses=[
        "10.1.0.5",
        {"addresses": ["10.1.0.6"], "conditions": {"ready": False}, "hostname": "web-1"},
    ])
    kube.endpoint_slice(ns, "web-v6", service="web", address_type="IPv6",
                        addresses=["fd00:1::5"])
    kube.pod(ns, "web-0", ips=["10.1.0.5", "fd00:1::5"], labels={"app": "web"},
             hostname="web-0", subdomain="headless")
    kube.pod(ns, "pending", labels={"app": "web"})
    kube.service_export(ns, "web")
    kube.service_import(ns, "web", ips=["10.97.0.5", "fd00:10:97::5"],
                        ip_families=["IPv4", "IPv6"], clusters=["east", "west"])
    kube.service_import(ns, "headless", type="Headless", ports=[(None, 5353, "UDP")])

    services = {s.metadata.name: s for s in kube_client.list(Service, namespace=ns)}
    assert set(services) == {"web", "headless", "alias", "dual"}
    web_ip = ipaddress.ip_address(services["web"].spec.clusterIP)
    assert web_ip in V4_RANGE
    assert services["headless"].spec.clusterIP == "None"
    assert services["alias"].spec.type == "ExternalName"
    assert services["alias"].spec.externalName == "target.example.invalid"
    dual = services["dual"].spec
    assert dual.ipFamilies == ["IPv4", "IPv6"]
    v4, v6 = (ipaddress.ip_address(ip) for ip in dual.clusterIPs)
    assert v4 in V4_RANGE and v6 in V6_RANGE
    assert [(p.name, p.port, p.protocol) for p in dual.ports] == [("http", 80, "TCP"),
                                                                  ("dns", 53, "UDP")]

    slices = {s.metadata.name: s for s in kube_client.list(
        EndpointSlice, namespace=ns, labels={"kubernetes.io/service-name": "web"})}
    assert set(slices) == {"web-v4", "web-v6"}
    v4_eps = slices["web-v4"].endpoints
    assert [(e.addresses, e.conditions.ready, e.hostname) for e in v4_eps] == [
        (["10.1.0.5"], True, None), (["10.1.0.6"], False, "web-1")]
    assert slices["web-v6"].addressType == "IPv6"

    pods = {p.metadata.name: p for p in kube_client.list(Pod, namespace=ns)}
    assert pods["web-0"].status.phase == "Running"
    assert [p.ip for p in pods["web-0"].status.podIPs] == ["10.1.0.5", "fd00:1::5"]
    assert pods["web-0"].spec.subdomain == "headless"
    assert pods["pending"].status.phase == "Pending"
    assert not pods["pending"].status.podIPs

    exports = [e.metadata.name for e in kube_client.list(ServiceExport, namespace=ns)]
    assert exports == ["web"]
    imports = {i.metadata.name: i for i in kube_client.list(ServiceImport, namespace=ns)}
    assert imports["web"].spec["ips"] == ["10.97.0.5", "fd00:10:97::5"]
    assert imports["web"].status["clusters"] == [{"cluster": "east"}, {"cluster": "west"}]
    assert imports["headless"].spec["type"] == "Headless"


def test_service_import_schema_is_enforced(kube: KubeObjects, kube_ns: str) -> None:
    # The CRD is a real schema, not a bag: the MCS type enum is checked by the API server.
    with pytest.raises(ApiError) as err:
        kube.service_import(kube_ns, "bad", type="LoadBalancer")
    assert err.value.status.code == 422


def test_namespace_teardown_removes_everything(kube_api: KubeAPI, kube: KubeObjects,
                                               kube_client: Client) -> None:
    ns = kube.namespace(f"teardown-{secrets.token_hex(3)}")
    kube.service(ns, "web")
    kube.endpoint_slice(ns, "web-1", service="web", addresses=["10.1.0.9"])
    kube.pod(ns, "bound", ips=["10.1.0.9"], node_name="node-without-kubelet")
    kube.service_export(ns, "web")

    kube_api.delete_namespace(ns)

    assert ns not in {n.metadata.name for n in kube_client.list(Namespace)}
    for kind in (Service, EndpointSlice, Pod, ServiceExport):
        assert list(kube_client.list(kind, namespace=ns)) == []


def test_restricted_kubeconfig_is_forbidden_endpointslices(kube_api: KubeAPI, kube: KubeObjects,
                                                           kube_ns: str) -> None:
    kube.service(kube_ns, "web")
    kubeconfig = kube_api.restricted_kubeconfig(f"lister-{secrets.token_hex(3)}")
    client = kube_api.client(kubeconfig)
    try:
        assert [s.metadata.name for s in client.list(Service, namespace=kube_ns)] == ["web"]
        with pytest.raises(ApiError) as err:
            list(client.list(EndpointSlice, namespace=kube_ns))
        assert err.value.status.code == 403
        assert err.value.status.reason == "Forbidden"
    finally:
        client.close()


def test_watch_list_streaming_works(kube_api: KubeAPI, kube: KubeObjects, kube_ns: str) -> None:
    # Streaming lists need etcd's RequestWatchProgress (etcd >= 3.4.31/3.5.13); client-go's
    # WatchList uses them. This is why Debian's etcd 3.4.23 is not used.
    kube.service(kube_ns, "one")
    kube.service(kube_ns, "two")
    params = {"watch": "1", "sendInitialEvents": "true", "allowWatchBookmarks": "true",
              "resourceVersionMatch": "NotOlderThan", "timeoutSeconds": "30"}
    added: list[str] = []
    with kube_api.http().stream("GET", f"/api/v1/namespaces/{kube_ns}/services",
                                params=params) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if not line.strip():
                continue
            event = json.loads(line)
            assert event["type"] in ("ADDED", "BOOKMARK"), event
            if event["type"] == "ADDED":
                added.append(event["object"]["metadata"]["name"])
                continue
            annotations = event["object"]["metadata"].get("annotations", {})
            if annotations.get("k8s.io/initial-events-end") == "true":
                break
    assert sorted(added) == ["one", "two"]


def test_etcd_compaction_makes_an_old_resource_version_gone(kube_api: KubeAPI, kube: KubeObjects,
                                                             kube_client: Client,
                                                             kube_ns: str) -> None:
    # ConfigMaps bypass the watch cache (UNCACHED_RESOURCES), so this watch is served from
    # etcd's history: present before the compaction, gone after it.
    cm = kube.create({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "c", "namespace": kube_ns}, "data": {"v": "0"}})
    old_rv = cm.metadata.resourceVersion
    for value in ("1", "2"):
        kube_client.patch(ConfigMap, "c", {"data": {"v": value}}, namespace=kube_ns,
                          patch_type=PatchType.MERGE)
    path = f"/api/v1/namespaces/{kube_ns}/configmaps"

    status, event = kube_api.watch_first_event(path, old_rv)
    assert status == 200 and event is not None
    assert (event["type"], event["object"]["data"]) == ("MODIFIED", {"v": "1"})

    compacted = kube_api.compact_etcd()
    # Strictly past the first event's revision: a watch that starts exactly at the compaction
    # revision is still allowed by etcd, but its first event lost its previous value and the
    # API server answers 500 "PrevKv=nil" instead of 410.
    assert compacted > int(old_rv) + 1
    status, event = kube_api.watch_first_event(path, old_rv)
    assert _is_gone(status, event), json.dumps(event)


def test_apiserver_restart_keeps_objects_and_expires_old_watches(
        kube_api: KubeAPI, kube: KubeObjects, kube_client: Client, kube_ns: str) -> None:
    old_rv = kube.service(kube_ns, "before").metadata.resourceVersion
    kube.service(kube_ns, "later")
    old_pid = kube_api.apiserver.pid

    kube_api.compact_etcd()
    kube_api.restart_apiserver()

    assert kube_api.apiserver.pid != old_pid
    kube.service(kube_ns, "after")
    names = sorted(s.metadata.name for s in kube_client.list(Service, namespace=kube_ns))
    assert names == ["after", "before", "later"]
    # What a client resuming its watch across the restart sees: relist required.
    status, event = kube_api.watch_first_event(f"/api/v1/namespaces/{kube_ns}/services", old_rv)
    assert _is_gone(status, event), json.dumps(event)


# --- CoreDNS ---------------------------------------------------------------------------------

ZONE = """\
$ORIGIN example.test.
@       3600 IN SOA ns.example.test. hostmaster.example.test. 1 7200 3600 1209600 300
@       3600 IN NS  ns
ns      3600 IN A   192.0.2.53
www     3600 IN A   192.0.2.80
"""


def test_coredns_answers_from_file_and_hosts(coredns: Callable[..., CoreDNS],
                                             tmp_path: Path) -> None:
    dns_server = coredns("""
        example.test {
            bind 127.0.0.1
            file {$ZONE_FILE}
        }
        hosts.test {
            bind 127.0.0.1
            hosts {
                192.0.2.10 www.hosts.test
                2001:db8::10 www.hosts.test
            }
        }
    """, env={"ZONE_FILE": str(_write(tmp_path / "db.example.test", ZONE))})

    answer = dns_server.query("www.example.test", "A")
    assert answer.rcode() == dns.rcode.NOERROR and answer.flags & dns.flags.AA
    assert [r.to_text() for r in answer.answer[0]] == ["192.0.2.80"]

    missing = dns_server.query("missing.example.test", "A", tcp=True)
    assert missing.rcode() == dns.rcode.NXDOMAIN
    assert [rrset.rdtype for rrset in missing.authority] == [dns.rdatatype.SOA]

    aaaa = dns_server.query("www.hosts.test", "AAAA")
    assert [r.to_text() for r in aaaa.answer[0]] == ["2001:db8::10"]


def test_coredns_refuses_a_corefile_without_loopback_bind(coredns: Callable[..., CoreDNS]) -> None:
    with pytest.raises(ValueError, match="bind"):
        coredns("example.test {\n    whoami\n}\n")


def test_coredns_kubernetes_plugin_reads_the_test_api_server(
        coredns: Callable[..., CoreDNS], kube_api: KubeAPI, kube: KubeObjects,
        kube_ns: str) -> None:
    # The foundation of the differential suite: CoreDNS's own kubernetes plugin, with the
    # fixture's kubeconfig, sees Services and ServiceImports written by these helpers.
    dual = kube.dual_stack_service(kube_ns, "web")
    kube.service_import(kube_ns, "web", ips=["10.97.0.7"], ip_families=["IPv4"])
    dns_server = coredns("""
        cluster.local clusterset.local {
            bind 127.0.0.1
            kubernetes cluster.local clusterset.local {
                kubeconfig {$KUBECONFIG_PATH}
                multicluster clusterset.local
            }
        }
    """, env={"KUBECONFIG_PATH": str(kube_api.kubeconfig)}, probe_name="cluster.local")

    v4, v6 = dual.spec.clusterIPs
    assert _eventually_answers(dns_server, f"web.{kube_ns}.svc.cluster.local", "A") == [v4]
    assert _eventually_answers(dns_server, f"web.{kube_ns}.svc.cluster.local", "AAAA") == [v6]
    assert _eventually_answers(dns_server, f"web.{kube_ns}.svc.clusterset.local", "A") == [
        "10.97.0.7"]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _eventually_answers(server: CoreDNS, name: str, rdtype: str) -> list[str]:
    """The answer's addresses once CoreDNS's informers have caught up (an event-driven wait,
    not a timing assertion: the deadline only bounds a failure)."""
    answer = wait_until(lambda: server.query(name, rdtype).answer, f"CoreDNS answered {name} {rdtype}", 20,
                        every=0.2)
    return sorted(r.to_text() for r in answer[0])

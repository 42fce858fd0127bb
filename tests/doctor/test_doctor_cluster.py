"""The doctor's cluster checks against the real kube-apiserver (testkit.kubeapi): API, RBAC,
the DNS Service and endpoints, ServiceCIDRs and nodes' podCIDRs against the plan."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from lightkube import ApiError, Client
from lightkube.resources.core_v1 import Node, NodeStatus

from interkube.deploy.rbac import Needs, rules
from interkube.doctor.findings import Level
from testkit.kubeapi import SERVICE_CIDRS, KubeAPI, KubeObjects
from testkit.servers import free_port
from tests.doctor.helpers import doctor, one

POD_CIDR = "10.244.0.0/16"


def dns_service(kube: KubeObjects, namespace: str) -> str:
    """A DNS Service in the test's namespace with a random ClusterIP (the session's API is shared)
    and one ready endpoint; its ClusterIP."""
    for _ in range(20):
        ip = f"10.96.{100 + secrets.randbelow(150)}.{2 + secrets.randbelow(250)}"
        try:
            kube.service(namespace, "dns", cluster_ip=ip, ports=[("dns", 53, "UDP")])
        except ApiError as exc:
            if exc.status.code == 422:  # the address is taken
                continue
            raise
        kube.endpoint_slice(namespace, "dns-1", service="dns", addresses=["10.244.1.5"],
                            ports=[("dns", 53, "UDP")])
        return ip
    raise AssertionError("no free ClusterIP found")


@pytest.fixture
def node(kube_client: Client) -> Iterator[str]:
    """A Node (cluster-scoped: removed afterwards) whose podCIDR is 10.244.1.0/24 and InternalIP
    192.168.0.7 (written to its status as a kubelet would)."""
    name = f"doctor-{secrets.token_hex(3)}"
    kube_client.create(Node.from_dict({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                                       "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]}}))
    kube_client.patch(NodeStatus, name, {"status": {"addresses": [{"type": "InternalIP", "address": "192.168.0.7"}]}})
    try:
        yield name
    finally:
        kube_client.delete(Node, name)


def plan(tmp_path: Path, *, services: list[str], pods: list[str], dns: str, endpoints: list[str],
         nodes: tuple[str, ...] = ("192.168.0.0/24",)) -> str:
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump({"clusters": [
        {"name": "c1", "nodes": list(nodes), "pods": pods, "services": services,
         "dns": {"service": dns, "endpoints": endpoints}},
        {"name": "c2", "nodes": ["10.1.0.0/16"], "pods": ["10.1.0.0/16"], "services": ["172.20.0.0/16"]}]}))
    return str(path)


async def test_cluster_as_planned(tmp_path: Path, kube_api: KubeAPI, kube: KubeObjects, kube_ns: str,
                                  node: str) -> None:
    ip = dns_service(kube, kube_ns)
    found = await doctor(plan=plan(tmp_path, services=list(SERVICE_CIDRS), pods=[POD_CIDR], dns=ip,
                                   endpoints=["10.244.1.5"]),
                         kubeconfig=str(kube_api.kubeconfig), contexts=(f"{kube_api.name}=c1",),
                         dns_service=f"{kube_ns}/dns")
    for id in ("cluster.api", "cluster.rbac", "cluster.dns-service", "cluster.dns-endpoints",
               "cluster.service-cidr", "cluster.pod-cidr", "cluster.nodes"):
        assert one(found, id).level is Level.OK, one(found, id)
    assert "10.244.1.0/24" in one(found, "cluster.pod-cidr").evidence
    assert ip in one(found, "cluster.dns-service").evidence


async def test_cluster_not_as_planned(tmp_path: Path, kube_api: KubeAPI, kube: KubeObjects, kube_ns: str,
                                      node: str) -> None:
    ip = dns_service(kube, kube_ns)
    found = await doctor(plan=plan(tmp_path, services=["10.100.0.0/16", "fd00:10:96::/112"], pods=["10.0.0.0/16"],
                                   dns="10.100.0.10", endpoints=["10.244.9.9"], nodes=("192.168.9.0/24",)),
                         kubeconfig=str(kube_api.kubeconfig), contexts=(f"{kube_api.name}=c1",),
                         dns_service=f"{kube_ns}/dns")
    service = one(found, "cluster.dns-service")
    assert service.level is Level.FAIL and ip in service.evidence and "10.100.0.10" in service.evidence
    endpoints = one(found, "cluster.dns-endpoints")
    assert endpoints.level is Level.FAIL and "10.244.9.9" in endpoints.evidence
    cidrs = [f for f in found if f.id == "cluster.service-cidr"]
    assert [f.level for f in cidrs] == [Level.FAIL, Level.FAIL]  # the ServiceCIDR, and the DNS IP outside the plan
    assert "10.96.0.0/16" in cidrs[0].evidence
    assert one(found, "cluster.pod-cidr").level is Level.FAIL
    nodes = one(found, "cluster.nodes")
    assert nodes.level is Level.FAIL and "192.168.0.7/32" in nodes.evidence


async def test_missing_dns_service_fails(kube_api: KubeAPI, kube_ns: str) -> None:
    # --kubeconfig alone: its current context.
    found = await doctor(kubeconfig=str(kube_api.kubeconfig), dns_service=f"{kube_ns}/dns")
    assert one(found, "cluster.api").subject == f"the current context of {kube_api.kubeconfig}"
    assert one(found, "cluster.dns-service").level is Level.FAIL
    assert one(found, "cluster.plan").level is Level.NOTE


async def test_rbac_missing_grants_fail(kube_api: KubeAPI) -> None:
    restricted = kube_api.restricted_kubeconfig(f"doctor-{secrets.token_hex(3)}")  # Services only
    found = await doctor(kubeconfig=str(restricted), contexts=(kube_api.name,))
    rbac = one(found, "cluster.rbac")
    assert rbac.level is Level.FAIL
    assert "list endpointslices.discovery.k8s.io" in rbac.evidence and "watch namespaces" in rbac.evidence
    assert "list services" not in rbac.evidence


async def test_rbac_follows_the_corefile(tmp_path: Path, kube_api: KubeAPI) -> None:
    # What interkube render grants a plain kubernetes stanza: enough for it, not for `pods verified`.
    granted = kube_api.restricted_kubeconfig(f"doctor-{secrets.token_hex(3)}", rules(Needs()))
    corefile = tmp_path / "Corefile"
    for pods, expected in (("", Level.OK), ("pods verified", Level.FAIL)):
        corefile.write_text(f"cluster.local:{free_port()} {{\n bind 127.0.0.1\n kubernetes cluster.local {{\n"
                            f"  kubeconfig {granted} {kube_api.name}\n  {pods}\n }}\n}}\n")
        found = await doctor(corefile=str(corefile), kubeconfig=str(granted), contexts=(kube_api.name,))
        assert one(found, "corefile.setup").level is Level.OK
        rbac = one(found, "cluster.rbac")
        assert rbac.level is expected, rbac
    assert "list pods" in rbac.evidence


async def test_unreachable_api_fails(tmp_path: Path, kube_api: KubeAPI) -> None:
    config = yaml.safe_load(kube_api.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
    broken = tmp_path / "kubeconfig"
    broken.write_text(yaml.safe_dump(config))
    found = await doctor(kubeconfig=str(broken), contexts=(kube_api.name,))
    api = one(found, "cluster.api")
    assert api.level is Level.FAIL and "does not answer" in api.evidence
    context = await doctor(kubeconfig=str(broken), contexts=("no-such-context",))
    assert one(context, "cluster.kubeconfig").level is Level.FAIL


async def test_corefile_stanzas_name_the_clusters(tmp_path: Path, kube_api: KubeAPI) -> None:
    # Without --context, each kubernetes stanza's own kubeconfig and context are checked for what
    # that stanza reads.
    granted = kube_api.restricted_kubeconfig(f"doctor-{secrets.token_hex(3)}", rules(Needs()))
    corefile = tmp_path / "Corefile"
    corefile.write_text(f"cluster.local:{free_port()} {{\n bind 127.0.0.1\n kubernetes cluster.local {{\n"
                        f"  kubeconfig {granted} {kube_api.name}\n  pods verified\n }}\n}}\n")
    found = await doctor(corefile=str(corefile))
    assert one(found, "cluster.api").level is Level.OK
    rbac = one(found, "cluster.rbac")
    assert rbac.level is Level.FAIL and rbac.subject == f"context {kube_api.name}" and "list pods" in rbac.evidence

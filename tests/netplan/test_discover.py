"""Discovery of a plan from live clusters, against the fake Kubernetes API on 127.0.0.1."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from interkube.cli import main
from interkube.errors import KubeconfigError, KubeError, KubeForbidden
from interkube.netplan.discover import cluster_name, discover, smallest_covering
from interkube.netplan.parse import load_plan
from testkit.fakekube import NODE, SERVICE_CIDR, FakeKube, serving_in_thread, write_kubeconfig


def node(name: str, ip: str, *pod_cidrs: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"podCIDR": pod_cidrs[0], "podCIDRs": list(pod_cidrs)} if pod_cidrs else {}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": spec,
            "status": {"addresses": [{"type": "InternalIP", "address": ip},
                                     {"type": "Hostname", "address": name}]}}


def service(namespace: str, name: str, *cluster_ips: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
            "spec": {"clusterIP": cluster_ips[0], "clusterIPs": list(cluster_ips),
                     "ports": [{"port": 53, "protocol": "UDP"}]}}


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def dns_slice(service_name: str, ready: list[str], unready: list[str] = ()) -> dict[str, Any]:
    endpoints = [{"addresses": [ip], "conditions": {"ready": True}} for ip in ready]
    endpoints += [{"addresses": [ip], "conditions": {"ready": False}} for ip in unready]
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": f"{service_name}-x1", "namespace": "kube-system",
                         "labels": {"kubernetes.io/service-name": service_name}},
            "endpoints": endpoints, "ports": [{"port": 53, "protocol": "UDP"}]}


def pod(namespace: str, name: str, ip: str, host_network: bool = False) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"containers": [{"name": "c", "image": "x"}], "hostNetwork": host_network},
            "status": {"podIP": ip, "podIPs": [{"ip": ip}]}}


def fill_kubeadm_cluster(kube: FakeKube) -> None:
    """A dual-stack kubeadm-like cluster that serves the ServiceCIDR API."""
    kube.add_all([
        node("cp", "192.168.10.2", "10.244.0.0/24", "fd00:10:244::/64"),
        node("w1", "192.168.10.3", "10.244.1.0/24", "fd00:10:244:1::/64"),
        {"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR", "metadata": {"name": "kubernetes"},
         "spec": {"cidrs": ["10.96.0.0/16", "fd00:10:96::/112"]}},
        service("default", "kubernetes", "10.96.0.1"),
        service("kube-system", "kube-dns", "10.96.0.10", labels={"k8s-app": "kube-dns"}),
        dns_slice("kube-dns", ready=["10.244.0.3", "10.244.1.7"], unready=["10.244.1.9"]),
        *(namespace(n) for n in ("default", "kube-system", "shop")),
    ])


def fill_eks_like_cluster(kube: FakeKube) -> None:
    """An EKS-like cluster: no pod CIDRs on nodes (VPC CNI), no ServiceCIDR API, coredns."""
    kube.add_all([
        node("ip-10-1-3-157", "10.1.3.157"),
        node("ip-10-1-80-190", "10.1.80.190"),
        pod("kube-system", "aws-node-1", "10.1.3.157", host_network=True),
        pod("kube-system", "coredns-1", "10.1.51.54"),
        pod("remote", "cb-0", "10.1.17.231"),
        service("default", "kubernetes", "172.20.0.1"),
        service("kube-system", "coredns", "172.20.0.10"),
        service("remote", "cb-example-srv", "172.20.92.77"),
        dns_slice("coredns", ready=["10.1.51.54"]),
        *(namespace(n) for n in ("default", "kube-system", "remote")),
    ])


async def test_discovery_reads_both_kinds_of_cluster(tmp_path: Path) -> None:
    async with FakeKube() as alpha, FakeKube(not_served=[SERVICE_CIDR]) as beta:
        fill_kubeadm_cluster(alpha)
        fill_eks_like_cluster(beta)
        beta_context = "arn:aws:eks:us-west-2:111122223333:cluster/beta"
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"kind-alpha": alpha, beta_context: beta})
        plan = await discover(kubeconfig, ["kind-alpha", beta_context], trust_env=False)

    first, second = plan.clusters
    assert (first.name, first.context) == ("kind-alpha", "kind-alpha")
    assert [str(r) for r in first.nodes] == ["192.168.10.2/31"]  # .2 and .3 collapse
    assert [str(r) for r in first.pods] == ["10.244.0.0/23", "fd00:10:244::/63"]
    assert (first.per_node_prefix.ipv4, first.per_node_prefix.ipv6) == (24, 64)
    assert [str(r) for r in first.services] == ["10.96.0.0/16", "fd00:10:96::/112"]
    assert first.dns is not None and str(first.dns.service) == "10.96.0.10"
    assert [str(e) for e in first.dns.endpoints] == ["10.244.0.3", "10.244.1.7"]  # not the unready one
    assert first.namespaces == ("default", "kube-system", "shop")
    assert first.inferred == ("networking",)

    assert (second.name, second.context) == ("beta", beta_context)
    assert [str(r) for r in second.nodes] == ["10.1.3.157/32", "10.1.80.190/32"]
    assert [str(r) for r in second.pods] == ["10.1.17.231/32", "10.1.51.54/32"]  # not the host-network pod
    # From ClusterIPs 172.20.0.1, .0.10 and .92.77, anchored at the network below 172.20.0.1.
    assert [str(r) for r in second.services] == ["172.20.0.0/17"]
    assert set(second.inferred) == {"networking", "pods", "services"}
    assert second.per_node_prefix.ipv4 is None
    assert second.dns is not None and [str(e) for e in second.dns.endpoints] == ["10.1.51.54"]
    assert second.namespaces == ("default", "kube-system", "remote")
    # The ServiceCIDR API was asked for and found missing before falling back.
    assert "GET /apis/networking.k8s.io/v1/servicecidrs" in beta.requests
    assert any(r.startswith("GET /api/v1/services") for r in beta.requests)
    assert not any(r.startswith("GET /api/v1/services") for r in alpha.requests)


def test_check_discovers_writes_plan_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # The command honours proxy variables as kubectl does; keep this test's traffic on loopback.
    for variable in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
    # Two kind clusters keep kind's default pod range 10.244.0.0/16: fine alone, a clash when routed together.
    alpha, gamma = FakeKube(), FakeKube()
    fill_kubeadm_cluster(alpha)
    fill_kubeadm_cluster(gamma)
    with serving_in_thread(alpha, gamma):
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"kind-alpha": alpha, "kind-gamma": gamma})
        written = tmp_path / "discovered.yaml"
        status = main(["check", "--kubeconfig", str(kubeconfig), "--context", "kind-alpha",
                       "--context", "kind-gamma", "--write-plan", str(written)])
    out = capsys.readouterr().out
    assert status == 1
    assert "R1" in out and "kind-alpha" in out and "kind-gamma" in out
    assert "routed (assumed)" in out
    plan = load_plan(written)
    assert [c.name for c in plan.clusters] == ["kind-alpha", "kind-gamma"]
    assert plan.clusters[1].pods[0].network == ipaddress.ip_network("10.244.0.0/23")
    assert written.read_text().startswith("# discovered by interkube check")


async def test_wrong_token_is_forbidden_naming_cluster_and_context(tmp_path: Path) -> None:
    async with FakeKube(token="right") as kube:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"prod": kube})
        kube.token = "rotated"
        with pytest.raises(KubeForbidden) as info:
            await discover(kubeconfig, ["prod"], trust_env=False)
    assert "cluster prod, context prod" in str(info.value) and "401" in str(info.value)


async def test_unreadable_service_cidrs_fall_back_but_unreadable_nodes_fail(tmp_path: Path) -> None:
    async with FakeKube(forbidden=[SERVICE_CIDR]) as limited, FakeKube(forbidden=[NODE]) as blind:
        fill_kubeadm_cluster(limited)
        fill_kubeadm_cluster(blind)
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"limited": limited, "blind": blind})
        [cluster] = (await discover(kubeconfig, ["limited"], trust_env=False)).clusters
        assert "services" in cluster.inferred
        assert [str(r) for r in cluster.services] == ["10.96.0.0/28"]  # .0 (below .1) to .10
        with pytest.raises(KubeForbidden, match="cluster blind, context blind: listing nodes: HTTP 403"):
            await discover(kubeconfig, ["blind"], trust_env=False)


async def test_unknown_context_and_missing_kubeconfig(tmp_path: Path) -> None:
    async with FakeKube() as kube:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"prod": kube})
        with pytest.raises(KubeconfigError, match="context nope"):
            await discover(kubeconfig, ["nope"], trust_env=False)
    with pytest.raises(KubeconfigError, match="cannot use kubeconfig"):
        await discover(tmp_path / "absent", ["prod"], trust_env=False)


async def test_unreachable_api_server(tmp_path: Path) -> None:
    kube = FakeKube()
    await kube.start()
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"gone": kube})
    await kube.close()  # the port on 127.0.0.1 now refuses connections
    with pytest.raises(KubeError, match="cluster gone, context gone: listing nodes"):
        await discover(kubeconfig, ["gone"], trust_env=False, timeout=5)


def test_cluster_names_are_dns_labels() -> None:
    taken: set[str] = set()
    assert cluster_name("arn:aws:eks:eu-west-1:1:cluster/Prod_EU", taken) == "prod-eu"
    assert cluster_name("gke_project_zone_prod-eu", taken) == "gke-project-zone-prod-eu"
    assert cluster_name("prod_eu", taken) == "prod-eu-2"
    assert cluster_name("%%%", taken) == "cluster"


def test_smallest_covering_per_family() -> None:
    ips = [ipaddress.ip_address(a) for a in ("10.96.0.1", "10.96.3.4", "fd00::1", "fd00::ff", "10.96.0.0")]
    assert [str(n) for n in smallest_covering(ips)] == ["10.96.0.0/22", "fd00::/120"]

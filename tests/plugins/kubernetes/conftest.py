"""Test clusters for the kubernetes plugin: their objects and snapshot files (the running
servers come from the `serve` fixture of tests/plugins/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from testkit.fakekube import endpoint_slice, pod, service, write_snapshot

DATA = Path(__file__).with_name("data")
#: Written by kubectl from a fake API holding sample_objects() (see test_kubernetes_snapshot_format.py).
CLUSTER_YAML = DATA / "cluster.yaml"


def sample_objects() -> list[dict[str, Any]]:
    """One object for each rule of the DNS specification and each corner CoreDNS has."""
    return [
        service("default", "kubernetes", cluster_ips=["10.96.0.1"], ports=[("https", 443, "TCP")]),
        # ClusterIP with two named ports; its endpoints give PTRs and endpoint names.
        service("app", "web", cluster_ips=["10.96.0.10"], ports=[("http", 80, "TCP"), ("metrics", 9090, "TCP")]),
        endpoint_slice("app", "web-x1", "web", [{"ip": "10.244.1.5", "pod": "web-1"}],
                       ports=[("http", 8080, "TCP"), ("metrics", 9090, "TCP")]),
        # One unnamed port: A records, no SRV by port name.
        service("app", "single", cluster_ips=["10.96.0.11"], ports=[("", 8080, "TCP")]),
        # Dual-stack and IPv6-only ClusterIPs.
        service("app", "dual", cluster_ips=["10.96.0.12", "fd00:10:96::12"]),
        service("app", "v6only", cluster_ips=["fd00:10:96::13"]),
        # Headless: a named endpoint, one named by its pod, one not ready; TCP and UDP ports.
        service("app", "hl", headless=True, ports=[("http", 80, "TCP"), ("dns", 53, "UDP")]),
        endpoint_slice("app", "hl-a", "hl", [{"ip": "10.244.1.10", "hostname": "pet-0", "pod": "pet-0"},
                                             {"ip": "10.244.1.11", "pod": "web-7d9f"},
                                             {"ip": "10.244.1.12", "pod": "web-zzz", "ready": False}],
                       ports=[("http", 8080, "TCP"), ("dns", 53, "UDP")]),
        # Headless, dual-stack: one slice per address family.
        service("app", "hl-ds", headless=True),
        endpoint_slice("app", "hl-ds-4", "hl-ds", [{"ip": "10.244.2.1", "hostname": "a"}]),
        endpoint_slice("app", "hl-ds-6", "hl-ds", [{"ip": "fd00:10:244::2:1", "hostname": "a"}],
                       address_type="IPv6"),
        # Headless with nothing ready: NXDOMAIN.
        service("app", "hl-none", headless=True),
        endpoint_slice("app", "hl-none-a", "hl-none", [{"ip": "10.244.3.1", "ready": False}]),
        # Headless without ports: A records, no SRV.
        service("app", "hl-noports", headless=True, ports=[]),
        endpoint_slice("app", "hl-noports-a", "hl-noports", [{"ip": "10.244.4.1", "hostname": "solo"}], ports=[]),
        # publishNotReadyAddresses: not-ready endpoints count.
        service("app", "pub", headless=True, publish_not_ready=True),
        endpoint_slice("app", "pub-a", "pub", [{"ip": "10.244.5.1", "ready": False, "hostname": "p0"}]),
        # ExternalName: outside the zone, inside it, and to a name that does not exist.
        service("app", "ext", external_name="www.example.com", ports=[]),
        service("app", "ext-in", external_name="web.app.svc.cluster.local", ports=[]),
        service("app", "ext-gone", external_name="gone.app.svc.cluster.local", ports=[]),
        # A ClusterIP Service without endpoints (for `ignore empty_service`).
        service("app", "idle", cluster_ips=["10.96.0.20"]),
        # The cluster DNS itself (NS records when this server is one of its endpoints).
        service("kube-system", "kube-dns", cluster_ips=["10.96.0.53"], ports=[("dns", 53, "UDP")]),
        endpoint_slice("kube-system", "kube-dns-a", "kube-dns", [{"ip": "10.244.0.53", "pod": "coredns-1"}],
                       ports=[("dns", 53, "UDP")]),
        # A labelled Service and one in a namespace of its own (for `labels` and `namespaces`).
        service("team", "api", cluster_ips=["10.96.0.30"], labels={"tier": "front"}),
        service("team", "db", cluster_ips=["10.96.0.31"], labels={"tier": "back"}),
        # Pods (for `pods verified`): running, and one being deleted.
        pod("app", "web-1", "10.244.1.5"),
        pod("app", "pet-0", "10.244.1.10"),
        pod("app", "leaving", "10.244.1.99", terminating=True),
        pod("app", "v6pod", "fd00:10:244::99"),
    ]


def bad_objects() -> list[dict[str, Any]]:
    """Objects a snapshot may hold that cannot be records: each is skipped and counted."""
    bad_port = service("app", "badport", cluster_ips=["10.96.0.40"])
    bad_port["spec"]["ports"][0]["port"] = "eighty"
    bad_ip = endpoint_slice("app", "badip-a", "web", [{"ip": "not-an-ip"}])
    no_name = service("app", "x", cluster_ips=["10.96.0.41"])
    del no_name["metadata"]["name"]
    return [bad_port, bad_ip, no_name]


@pytest.fixture
def cluster_yaml() -> Path:
    """The sample cluster as kubectl wrote it (see test_kubernetes_snapshot_format.py)."""
    return CLUSTER_YAML


@pytest.fixture
def cluster_objects() -> list[dict[str, Any]]:
    return sample_objects()


@pytest.fixture
def malformed_objects() -> list[dict[str, Any]]:
    return bad_objects()


@pytest.fixture
def snapshot_writer() -> Callable[[Path, list[dict[str, Any]]], Path]:
    return write_snapshot

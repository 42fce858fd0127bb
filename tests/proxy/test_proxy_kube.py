"""interkube proxy fed by a real kube-apiserver (list+watch): changes followed, an outage rides
on the last rules, and a restart of the API server is followed by a resync.

The API server listens on the host's loopback; the gateway namespace reaches it through a
loopback relay (testkit.netns), so the proxy uses the fixture's kubeconfig unchanged.
"""

from __future__ import annotations

from typing import Any

import pytest
from lightkube.resources.discovery_v1 import EndpointSlice

from testkit.kubeapi import KubeAPI, KubeObjects
from testkit.waiting import wait_until

from proxylab import TCP_PORT, UDP_PORT, Topology

pytestmark = [pytest.mark.netns, pytest.mark.peers]

PORTS = (("http", TCP_PORT, "TCP"), ("dns", UDP_PORT, "UDP"))


def slice_of(kube: KubeObjects, ns: str, name: str, pods: list[str]) -> Any:
    return kube.endpoint_slice(ns, name, service="web", addresses=pods, ports=PORTS)


def test_live_changes_an_api_outage_and_a_restart(topo: Topology, kube_api: KubeAPI, kube: KubeObjects,
                                                   kube_ns: str) -> None:
    a = topo.cluster("a")
    topo.gateway.bridge_loopback(kube_api.port)
    svc = kube.service(kube_ns, "web", ports=(("http", 80, "TCP"), ("dns", 53, "UDP")))
    vip = svc.spec.clusterIP
    slice_of(kube, kube_ns, "web-1", a.pods[:2])
    conf = topo.conf(cluster_options={"a": f"kubeconfig {kube_api.kubeconfig}"}, extra="    http 127.0.0.1:9402\n")
    topo.start_proxy(conf)
    topo.wait_endpoints(vip, 80, 2)
    assert {topo.tcp(vip, 80)[0] for _ in range(30)} == set(a.pods[:2])
    assert topo.udp(vip, 53)[0] in a.pods[:2]

    # A watch event: a third pod.
    slice_of(kube, kube_ns, "web-2", a.pods[2:])
    topo.wait_endpoints(vip, 80, 3)
    assert topo.http(9402, "/ready") == (200, "cluster a: ok\n")

    kube_api.stop_apiserver()
    try:
        wait_until(lambda: topo.http(9402, "/ready")[0] == 503, "/ready to report the API down", timeout=90)
        code, body = topo.http(9402, "/ready/a")
        assert code == 503 and "cluster a: down" in body and "keeping its rules" in body
        assert 'interkube_proxy_cluster_up{cluster="a"} 0.0' in topo.http(9402, "/metrics")[1]
        # The rules stay as they were.
        assert {topo.tcp(vip, 80)[0] for _ in range(60)} == set(a.pods)  # a pod missed: 3 x (2/3)^60
    finally:
        kube_api.start_apiserver()
    wait_until(lambda: topo.http(9402, "/ready")[0] == 200, f"/ready after the restart\n{topo.logs()}", timeout=120)
    # Changes made after the restart arrive: two pods go.
    kube.client.delete(EndpointSlice, "web-1", namespace=kube_ns)
    topo.wait_endpoints(vip, 80, 1)
    assert {topo.tcp(vip, 80)[0] for _ in range(10)} == set(a.pods[2:])

"""``--probe NETNS`` and the proxy checks in network namespaces this test makes (testkit.netns):
a client pod of cluster1 with its interkube, cluster1's router running ``interkube proxy`` for
cluster2's Service range, and a pod of cluster2 serving its DNS. As root; skipped otherwise.

    client (10.250.0.2, DNS 10.0.0.10) -- router (proxy) -- cluster2 pod (10.1.0.53: DNS on 53)
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from interkube.doctor.findings import Finding, Level
from testkit.fakekube import endpoint_slice, service, write_snapshot
from testkit.netns import Lab, Netns, unavailable
from testkit.servers import free_port
from testkit.waiting import wait_until
from tests.doctor.helpers import ZONE, doctor, one, zone_file

LOCAL_DNS, REMOTE_POD, SECOND_POD, REMOTE_VIP = "10.0.0.10", "10.1.0.53", "10.1.0.54", "172.20.0.10"
SRV = f"_couchbase._tcp.cb-example-srv.{ZONE}"


@dataclass
class Scenario:
    lab: Lab
    tmp: Path
    client: Netns
    router: Netns
    remote: Netns
    proxy_port: int
    proxy: subprocess.Popen[bytes] | None = None

    def serve(self, ns: Netns, corefile: str, name: str) -> None:
        path = self.tmp / name
        path.write_text(corefile)
        with (self.tmp / f"{name}.log").open("wb") as log:  # the child keeps its own descriptor
            ns.start([sys.executable, "-m", "interkube", "serve", "-conf", str(path)], stdout=log,
                     stderr=subprocess.STDOUT)

    def start_proxy(self) -> None:
        snapshot = write_snapshot(self.tmp / "cluster2.yaml", [
            service("kube-system", "kube-dns", cluster_ips=[REMOTE_VIP], ports=[("dns-tcp", 53, "TCP")]),
            endpoint_slice("kube-system", "kube-dns-1", "kube-dns", [{"ip": REMOTE_POD}],
                           ports=[("dns-tcp", 53, "TCP")])])
        conf = self.tmp / "proxy.conf"
        conf.write_text(f"proxy {{\n    cluster cluster2 {{\n        snapshot {snapshot}\n"
                        f"        service_cidr 172.20.0.0/16\n    }}\n    http 127.0.0.1:{self.proxy_port}\n}}\n")
        with (self.tmp / "proxy.log").open("wb") as log:
            self.proxy = self.router.start([sys.executable, "-m", "interkube", "proxy", "-conf", str(conf)],
                                           stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: self.router.run("nft", "list", "table", "ip", "interkube", check=False).returncode == 0,
                   "the proxy's table", 30)

    def stop_proxy(self) -> None:
        assert self.proxy is not None
        self.proxy.terminate()  # SIGTERM: the proxy removes its tables
        self.proxy.wait(30)
        self.proxy = None

    def plan(self) -> str:
        path = self.tmp / "plan.yaml"
        path.write_text(yaml.safe_dump({
            "clusters": [
                {"name": "cluster1", "nodes": ["10.250.0.0/24"], "pods": ["10.0.0.0/16"], "services": ["172.21.0.0/16"],
                 "forward": [{"namespace": "remote", "to": "cluster2"}]},
                {"name": "cluster2", "nodes": ["10.251.0.0/24"], "pods": ["10.1.0.0/16"], "services": ["172.20.0.0/16"],
                 "dns": {"service": REMOTE_VIP, "endpoints": [REMOTE_POD]}}],
            "links": [{"between": ["cluster1", "cluster2"], "pod_traffic": True, "service_proxy": True}]}))
        return str(path)

    async def doctor(self, **options: Any) -> list[Finding]:
        return await doctor(**{"plan": self.plan(), "probe": self.client.name, "probe_dns": LOCAL_DNS,
                               "proxy": f"http://127.0.0.1:{self.proxy_port}", "proxy_netns": self.router.name,
                               **options})


def answers(ns: Netns, server: str) -> bool:
    out = ns.run("dig", "+short", "+time=1", "+tries=1", f"@{server}", ZONE, "SOA", check=False)
    return out.returncode == 0 and bool(out.stdout.strip())


@pytest.fixture
def scenario(tmp_path: Path) -> Iterator[Scenario]:
    why = unavailable()
    if why:
        pytest.skip(why)
    with Lab(prefix="ikdoc") as lab:
        client, router, remote = lab.netns("cli"), lab.netns("rtr"), lab.netns("pod2")
        lab.link(client, router, ["10.250.0.2/24"], ["10.250.0.1/24"])
        lab.link(router, remote, ["10.251.0.1/24"], ["10.251.0.2/24"])
        router.sysctl("net.ipv4.ip_forward", "1")
        client.ip("addr", "add", f"{LOCAL_DNS}/32", "dev", "lo")
        client.ip("route", "add", "default", "via", "10.250.0.1")
        remote.ip("addr", "add", f"{REMOTE_POD}/32", "dev", "lo")
        remote.ip("route", "add", "default", "via", "10.251.0.1")
        router.ip("route", "add", "10.1.0.0/16", "via", "10.251.0.2")
        s = Scenario(lab, tmp_path, client, router, remote, free_port())
        remote.ip("addr", "add", f"{SECOND_POD}/32", "dev", "lo")
        zone = Path(zone_file(tmp_path / "remote.zone"))
        zone.write_text(zone.read_text() + "".join(
            f"_couchbase._tcp.{name} 30 IN SRV 0 50 53 {target}\n"
            for name, target in (("cb-example-srv", "cb-0.cb-example-srv"), ("cb-example-srv", "cb-1.cb-example-srv"),
                                 ("broken", "cb-9.broken")))
            + f"cb-0.cb-example-srv 30 IN A {REMOTE_POD}\ncb-1.cb-example-srv 30 IN A {SECOND_POD}\n")
        s.serve(remote, f"{ZONE}:53 {{\n bind {REMOTE_POD} {SECOND_POD}\n file {zone}\n}}\n", "Corefile.cluster2")
        s.serve(client, f"{ZONE}:53 {{\n bind {LOCAL_DNS}\n forward . {REMOTE_POD}\n}}\n", "Corefile.cluster1")
        wait_until(lambda: answers(client, LOCAL_DNS), "cluster1's DNS answering through cluster2's", 30)
        yield s


async def test_probe_through_dns_pod_and_proxied_vip(scenario: Scenario) -> None:
    scenario.start_proxy()
    found = await scenario.doctor()
    dns = one(found, "probe.dns")
    assert dns.level is Level.OK and ZONE in dns.subject and "serial 7" in dns.evidence
    connects = {f.subject: f.level for f in found if f.id == "probe.connect"}
    assert connects == {f"tcp {REMOTE_POD}:53 (a pod of cluster cluster2 (its DNS))": Level.OK,
                        f"tcp {REMOTE_VIP}:53 (the Service VIP of cluster cluster2's DNS, through interkube proxy)":
                            Level.OK}, found
    for id in ("proxy.table", "proxy.ready", "proxy.status"):
        assert one(found, id).level is Level.OK, one(found, id)
    assert "cluster cluster2: 1 services, 1 endpoints" in one(found, "proxy.status").evidence


async def test_probe_without_a_route_and_without_the_proxy(scenario: Scenario) -> None:
    scenario.start_proxy()
    scenario.stop_proxy()
    found = await scenario.doctor()
    assert one(found, "probe.dns").level is Level.OK
    connects = {f.subject.split()[1]: f for f in found if f.id == "probe.connect"}
    assert connects[f"{REMOTE_POD}:53"].level is Level.OK
    vip = connects[f"{REMOTE_VIP}:53"]  # no proxy: nothing answers for the VIP
    assert vip.level is Level.FAIL and vip.fix
    for id in ("proxy.table", "proxy.ready"):
        assert one(found, id).level is Level.FAIL, one(found, id)

    scenario.router.ip("route", "del", "10.1.0.0/16")  # the remote pod range is no longer routed
    found = await scenario.doctor()
    assert one(found, "probe.dns").level is Level.FAIL
    assert all(f.level is Level.FAIL for f in found if f.id == "probe.connect")


async def test_probe_srv_targets(scenario: Scenario) -> None:
    # The forwarded-DNS scenario by hand: the SRV through the local interkube, each target's
    # address, a TCP connection to each.
    found = await scenario.doctor(probe_srv=(SRV,), probe_connect=(f"{SECOND_POD}:53",), proxy=None,
                                  proxy_netns=None)
    assert one(found, "probe.connect", "given with --probe-connect").level is Level.OK
    srv = one(found, "probe.srv")
    assert srv.level is Level.OK and "2 targets" in srv.evidence, srv
    targets = {f.subject: f.level for f in found if f.id == "probe.connect" and "SRV target" in f.subject}
    assert targets == {f"tcp {REMOTE_POD}:53 (SRV target cb-0.cb-example-srv.{ZONE})": Level.OK,
                       f"tcp {SECOND_POD}:53 (SRV target cb-1.cb-example-srv.{ZONE})": Level.OK}, found

    found = await scenario.doctor(probe_srv=(f"_couchbase._tcp.broken.{ZONE}", f"_couchbase._tcp.none.{ZONE}"),
                                  proxy=None, proxy_netns=None)
    broken, none = [f for f in found if f.id == "probe.srv"]
    assert broken.level is Level.FAIL and "1 of 1 targets without an address" in broken.evidence
    assert none.level is Level.FAIL and "NXDOMAIN" in none.evidence

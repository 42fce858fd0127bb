"""The doctor against `interkube lab` (testkit.lab): each scenario's lab, and its broken variant
diagnosed with the finding that names what is wrong. As root; skipped otherwise."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from interkube.doctor.findings import Finding, Level, from_dicts
from interkube.lab.build import Lab
from interkube.tlsutil import certs
from testkit.lab import LabUp
from testkit.waiting import wait_until
from tests.doctor.helpers import doctor, one

ROOT = Path(__file__).resolve().parents[2]
FORWARDED = ROOT / "examples" / "lab" / "forwarded_dns.yaml"
BLACK_HOLE = ROOT / "examples" / "plans" / "001_vip_black_hole.yaml"
DISCOVERY = ROOT / "examples" / "lab" / "discovery.yaml"
SRV = "_couchbase._tcp.cb-example-srv.remote.svc.cluster.local"


async def probe(lab: Lab, pod: str, **options: object) -> list[Finding]:
    return await doctor(probe_pod=pod, lab_state=str(lab.state_dir), **options)


def targets(found: list[Finding]) -> list[Level]:
    return [f.level for f in found if f.id == "probe.connect" and "SRV target" in f.subject]


async def test_forwarded_dns_lab(lab_up: LabUp) -> None:
    lab = lab_up(FORWARDED)
    found = await probe(lab, "cluster1/client", probe_srv=(SRV,))
    assert one(found, "plan.rules").level is Level.OK
    assert one(found, "probe.dns", "remote.svc.cluster.local").level is Level.OK
    assert one(found, "probe.connect", "a pod of cluster cluster2").level is Level.OK
    srv = one(found, "probe.srv")
    assert srv.level is Level.OK and "3 targets" in srv.evidence
    assert targets(found) == [Level.OK] * 3


async def test_forwarded_dns_to_an_overlay_cluster_is_diagnosed(lab_up: LabUp) -> None:
    # cluster2's pods behind VXLAN: the SRV still resolves, to addresses nobody outside reaches.
    text = FORWARDED.read_text().replace("  - name: cluster2\n", "  - name: cluster2\n    networking: overlay\n")
    text = text.replace("    pods: [10.1.0.0/16]\n", "    pods: [10.244.0.0/16]\n")
    lab = lab_up(text.replace(", endpoints: [10.1.28.194]", ""))
    found = await probe(lab, "cluster1/client", probe_srv=(SRV,))
    r4 = one(found, "plan.R4")
    assert r4.level is Level.FAIL and "cluster2" in r4.evidence
    assert one(found, "probe.srv").level is Level.OK
    assert targets(found) == [Level.FAIL] * 3
    # The router has no route to the overlay's pod range (only its node range is announced): an
    # ICMP error, or nothing where the kernel's ICMP rate limit held the error back.
    assert all("unreachable" in f.evidence or "no answer within" in f.evidence
               for f in found if f.id == "probe.connect" and "SRV" in f.subject)


async def test_vip_black_hole_lab_and_its_fix(lab_up: LabUp) -> None:
    lab = lab_up(BLACK_HOLE)
    pod = lab.cluster("database").pod("web-0")
    target = f"{pod.addresses[0]}:{pod.port}"
    found = await probe(lab, "client/host", probe_connect=(target,))
    r3 = one(found, "plan.R3")
    assert r3.level is Level.FAIL and "10.32.0.7/32" in r3.evidence
    connect = one(found, "probe.connect", target)
    assert connect.level is Level.FAIL and "swallows replies" in connect.evidence

    fixed = lab_up(BLACK_HOLE.read_text().replace("services: [10.32.0.0/16]", "services: [10.1.0.0/16]"))
    pod = fixed.cluster("database").pod("web-0")
    target = f"{pod.addresses[0]}:{pod.port}"
    found = await probe(fixed, "client/host", probe_connect=(target,))
    assert not [f for f in found if f.id.startswith("plan.R") and f.level is Level.FAIL]
    assert one(found, "probe.connect", target).level is Level.OK


async def test_discovery_lab_through_the_proxy_and_without_it(lab_up: LabUp) -> None:
    lab = lab_up(DISCOVERY)
    west = f"{lab.cluster('west').services[2].cluster_ips[0]}:80"  # west's web Service VIP
    found = await probe(lab, "east/client", probe_connect=(west,))
    for id in ("proxy.table", "proxy.ready", "proxy.status"):
        assert one(found, id).level is Level.OK, one(found, id)
    assert "cluster west:" in one(found, "proxy.status").evidence
    assert one(found, "probe.connect", west).level is Level.OK

    # The broken variant: east's router without its proxy (SIGTERM: it removes its tables).
    os.kill(lab.state["pids"]["proxy/east"], signal.SIGTERM)
    wait_until(lambda: lab.exec("east", "router", ["nft", "list", "table", "ip", "interkube"]).returncode != 0,
               "east's proxy table removed")
    found = await probe(lab, "east/client", probe_connect=(west,))
    for id in ("proxy.table", "proxy.ready"):
        assert one(found, id).level is Level.FAIL, one(found, id)
    assert one(found, "probe.connect", west).level is Level.FAIL


IPV6_ONLY = """\
clusters:
  - name: cluster1
    nodes: [fd10:0:1::/64]
    pods: [fd10:1::/56]
    services: [fd10:96:1::/112]
    forward: [{namespace: remote, to: cluster2}]
  - name: cluster2
    nodes: [fd10:0:2::/64]
    pods: [fd10:2::/56]
    services: [fd10:96:2::/112]
links:
  - {kind: peering, between: [cluster1, cluster2], pod_traffic: true}
"""


async def test_forwarded_dns_lab_over_ipv6(lab_up: LabUp) -> None:
    lab = lab_up(IPV6_ONLY)
    found = await probe(lab, "cluster1/client", probe_srv=(SRV,))
    assert not [f for f in found if f.level is Level.FAIL], [f for f in found if f.level is Level.FAIL]
    assert one(found, "probe.dns", "remote.svc.cluster.local").level is Level.OK
    srv = one(found, "probe.srv")
    assert srv.level is Level.OK and "fd10:2:" in srv.evidence
    assert targets(found) == [Level.OK] * 3


def doctor_inside(lab: Lab, cluster: str, pod: str, *argv: str) -> dict[str, Finding]:
    """``interkube doctor ARGV --json`` run in a lab pod's namespace: its findings by id."""
    out = lab.exec(cluster, pod, [sys.executable, "-m", "interkube", "doctor", *argv, "--json"], timeout=120)
    assert out.returncode in (0, 1) and out.stdout, out.stderr
    return {f.id: f for f in from_dicts(json.loads(out.stdout)["findings"])}


async def test_forwarded_dns_over_dot_with_mtls_from_the_dns_pod(lab_up: LabUp, tmp_path: Path) -> None:
    # The doctor where cluster1's interkube runs, on its own Corefile: the DoT upstream (cluster2's
    # front, mutual TLS) answers, and its certificate is right.
    lab = lab_up(FORWARDED, dot=True)
    corefile = lab.state_dir / "dns" / "cluster1" / "Corefile"
    found = doctor_inside(lab, "cluster1", "dns", "-conf", str(corefile))
    for id in ("corefile.setup", "corefile.open-resolver", "upstream.tls-name", "upstream.tls-chain",
               "upstream.tls-expiry", "upstream.soa"):
        assert found[id].level is Level.OK, found[id]

    # Broken: a server name the certificate does not have, and a client certificate of another CA.
    text = corefile.read_text()
    misnamed = tmp_path / "Corefile.misnamed"
    misnamed.write_text(text.replace("tls_servername dns.cluster2", "tls_servername dns.elsewhere"))
    found = doctor_inside(lab, "cluster1", "dns", "-conf", str(misnamed))
    assert found["upstream.tls-name"].level is Level.FAIL and "dns.elsewhere" in found["upstream.tls-name"].evidence
    assert found["upstream.soa"].level is Level.FAIL and "not valid for the name" in found["upstream.soa"].evidence

    other = certs.create_ca("another CA")
    stranger = certs.issue(other, "dns-client", server=False, client=True)
    stranger.save(tmp_path / "client.crt", tmp_path / "client.key")
    client = lab.state_dir / "certs" / "cluster1" / "client"
    foreign = tmp_path / "Corefile.foreign"
    foreign.write_text(text.replace(f"{client}.crt", str(tmp_path / "client.crt"))
                       .replace(f"{client}.key", str(tmp_path / "client.key")))
    found = doctor_inside(lab, "cluster1", "dns", "-conf", str(foreign))
    soa = found["upstream.soa"]
    assert soa.level is Level.FAIL and "TLS refused" in soa.evidence, soa

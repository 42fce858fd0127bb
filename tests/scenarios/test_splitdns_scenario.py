"""Issue 15, section 4: the split-DNS scenario end to end, on loopback, with two real clusters.

Cluster A (``kube_api``) runs three database servers: a StatefulSet-shaped headless Service
``db`` whose pods ``db-0``..``db-2`` have hostname and subdomain (``db-2`` not ready). Cluster B
(``kube_api_b``) runs a read-only replica. The public DNS is an authoritative ``file`` zone for
``example.com`` giving every server a public address (203.0.113.x).

* FQDN / SplitDNS variant: A's DNS has *splitdns* for ``db.example.com``; there
  ``db-0.db.example.com`` is db-0's pod address, while outside A (the public DNS, or B's DNS,
  which forwards to it) it is the public address; a server not ready in A is the public one too.
* ServiceName variant: ``interkube externalnames`` keeps ExternalName Services in B for A's
  servers; a resolver in B (unbound, forwarding to B's DNS, following CNAMEs as a pod's
  recursive resolver does) resolves the server ``db-0`` of namespace ``shop`` (``db-0.shop``:
  Kubernetes DNS has no names below an ExternalName Service, so each server is a Service of its
  own) through ``db-0.shop.svc.cluster.local`` -> ``db-0.db.shop.svc.cluster.a`` (B's DNS reads A
  for ``cluster.a``) to db-0's pod address in A.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.kubeapi import KubeAPI, KubeObjects
from testkit.servers import aaddresses, free_port, in_process, unbound
from testkit.waiting import until

pytestmark = pytest.mark.peers

WAIT = 60.0
PUBLIC = {"db-0": "203.0.113.10", "db-1": "203.0.113.11", "db-2": "203.0.113.12"}
POD = {"db-0": "10.244.1.10", "db-1": "10.244.1.11", "db-2": "10.244.1.12"}


@pytest.fixture
def shop(kube_api_b: KubeAPI, kube_ns: str) -> Iterator[str]:
    """The database's namespace, in both clusters."""
    client = kube_api_b.client()
    KubeObjects(client).namespace(kube_ns)
    try:
        yield kube_ns
    finally:
        client.close()
        kube_api_b.delete_namespace(kube_ns)


def database_in_a(a: KubeObjects, ns: str) -> None:
    """Three servers as a StatefulSet makes them: pods with hostname and subdomain, the headless
    Service, and the EndpointSlice the EndpointSlice controller would write (db-2 not ready)."""
    a.headless_service(ns, "db", ports=[("db", 2113, "TCP")], selector={"app": "db"})
    for host, ip in POD.items():
        a.pod(ns, host, ips=[ip], hostname=host, subdomain="db", labels={"app": "db"}, ready=host != "db-2")
    a.endpoint_slice(ns, "db-abcde", service="db", ports=[("db", 2113, "TCP")], addresses=[
        {"addresses": [ip], "hostname": host, "conditions": {"ready": host != "db-2"},
         "targetRef": {"kind": "Pod", "name": host, "namespace": ns}} for host, ip in POD.items()])


def public_zone(path: Path) -> Path:
    records = "\n".join(f"{host}.db IN A {ip}" for host, ip in PUBLIC.items())
    path.write_text(f"""$ORIGIN example.com.
@ 3600 IN SOA ns.example.com. hostmaster.example.com. 1 7200 1800 86400 30
@ IN NS ns.example.com.
ns IN A 203.0.113.1
{records}
""")
    return path


async def addresses(port: int, name: str) -> tuple[str, list[str]]:
    return await aaddresses(name, port)


async def test_split_dns_in_a_and_the_service_name_variant_in_b(
        kube: KubeObjects, shop: str, two_clusters_kubeconfig: Path, tmp_path: Path) -> None:
    ns = shop
    database_in_a(kube, ns)
    # The ServiceName variant's ExternalName Services in B, made by the controller.
    done = subprocess.run(["python3", "-m", "interkube", "externalnames", "--kubeconfig", str(two_clusters_kubeconfig),
                           "--source", "a", "--target", "b", "--namespace", ns, "--once"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"created Service {ns}/db-0: ExternalName db-0.db.{ns}.svc.cluster.a" in done.stdout

    kc = two_clusters_kubeconfig
    public, dns_a, dns_b, resolver_b = free_port(), free_port(), free_port(), free_port()
    corefile = f"""example.com:{public} {{
    bind 127.0.0.1
    file {public_zone(tmp_path / "example.com.zone")}
}}
.:{dns_a} {{
    bind 127.0.0.1
    kubernetes cluster.local {{
        kubeconfig {kc} a
        cluster a
        namespaces {ns}
    }}
    splitdns db.example.com {{
        pod ^db-([0-9]+)\\.db\\.example\\.com\\.$ db-{{1}}.db.{ns}.svc.cluster.local.
    }}
    forward . 127.0.0.1:{public}
}}
.:{dns_b} {{
    bind 127.0.0.1
    kubernetes cluster.local {{
        kubeconfig {kc} b
        cluster b
        namespaces {ns}
    }}
    kubernetes cluster.a {{
        kubeconfig {kc} a
        cluster a
        namespaces {ns}
    }}
    forward . 127.0.0.1:{public}
}}
"""
    forward_to_b = f"""    do-not-query-localhost: no
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@{dns_b}
"""
    async with in_process(corefile):
        async def both_synced() -> bool:
            return [(await addresses(dns_a, f"db.{ns}.svc.cluster.local"))[0],
                    (await addresses(dns_b, f"db.{ns}.svc.cluster.a"))[0]] == ["NOERROR", "NOERROR"]

        await until(both_synced, "both clusters synced", WAIT)

        # Inside A: the pod's own address, never the public one (no hairpin).
        assert await addresses(dns_a, "db-0.db.example.com") == ("NOERROR", [POD["db-0"]])
        assert await addresses(dns_a, "DB-1.db.example.com") == ("NOERROR", [POD["db-1"]])
        # A server not ready in A: the public DNS answers.
        assert await addresses(dns_a, "db-2.db.example.com") == ("NOERROR", [PUBLIC["db-2"]])
        # Outside A: the public address, from the public zone and through B's DNS alike.
        assert await addresses(public, "db-0.db.example.com") == ("NOERROR", [PUBLIC["db-0"]])
        assert await addresses(dns_b, "db-0.db.example.com") == ("NOERROR", [PUBLIC["db-0"]])

        # In B, the ServiceName variant: the ExternalName chain to A's pod, through a resolver.
        with unbound(resolver_b, [], zone="unused.invalid.", extra=forward_to_b):
            assert await addresses(resolver_b, f"db-0.{ns}.svc.cluster.local") == ("NOERROR", [POD["db-0"]])
            # The Service name of the set: every ready server in A.
            assert await addresses(resolver_b, f"db.{ns}.svc.cluster.local") == (
                "NOERROR", [POD["db-0"], POD["db-1"]])

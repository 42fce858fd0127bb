"""Every example of the k8s_external README, started as written (but for the port, the kubeconfig,
which points at a fake API server on loopback, and the zone file's path), answering as it says."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import dns.message
import dns.rcode

from testkit.fakekube import FakeKube, service, write_kubeconfig
from testkit.readme import on_port, readme_examples
from testkit.servers import aquery, free_port, in_process

from k8s_external_data import load_balancer, objects, with_external_ips

ZONE_FILE = """\
@ 300 IN SOA ns admin 1 7200 1800 86400 30
@ 300 IN NS ns
ns 300 IN A 192.0.2.53
www 300 IN A 192.0.2.80
"""


@contextlib.asynccontextmanager
async def example(index: int, tmp_path: Path) -> AsyncIterator[int]:
    async with FakeKube(watch=True) as fake:
        # The README's own Services: web (a load balancer) and one with externalIPs.
        fake.add_all([*objects(), load_balancer("shop", "web", [{"ip": "192.0.2.10"}]),
                      with_external_ips(service("shop", "static"), "192.0.2.11")])
        text = readme_examples("k8s_external")[index]
        text = text.replace("/etc/interkube/kubeconfig", str(write_kubeconfig(tmp_path / "kubeconfig", {"c": fake})))
        (tmp_path / "db.example.org").write_text(ZONE_FILE)
        text = text.replace("/etc/interkube/db.example.org", str(tmp_path / "db.example.org"))
        port = free_port()
        async with in_process(on_port(text, port)):
            yield port


async def ask(port: int, name: str, rdtype: str = "A") -> tuple[str, set[str]]:
    msg: dns.message.Message = await aquery(name, rdtype, port)
    return dns.rcode.to_text(msg.rcode()), {f"{r.name} {r.ttl} {rd}" for r in msg.answer for rd in r}


def test_the_readme_has_the_examples_tested_here() -> None:
    assert len(readme_examples("k8s_external")) == 2


async def test_external_names_beside_the_clusters_zone(tmp_path: Path) -> None:
    async with example(0, tmp_path) as port:
        assert await ask(port, "web.shop.example.org") == ("NOERROR", {"web.shop.example.org. 5 192.0.2.10"})
        assert await ask(port, "static.shop.example.org") == ("NOERROR", {"static.shop.example.org. 5 192.0.2.11"})
        assert await ask(port, "hlext.shop.example.org") == ("NOERROR", {"hlext.shop.example.org. 5 192.0.2.12"})
        assert await ask(port, "web.shop.svc.cluster.local") == (
            "NOERROR", {"web.shop.svc.cluster.local. 5 10.96.0.10"})


async def test_headless_another_apex_reverse_and_fallthrough(tmp_path: Path) -> None:
    async with example(1, tmp_path) as port:
        assert await ask(port, "db.shop.example.org") == (
            "NOERROR", {"db.shop.example.org. 30 10.244.1.5", "db.shop.example.org. 30 10.244.1.6"})
        assert await ask(port, "10.2.0.192.in-addr.arpa", "PTR") == (
            "NOERROR", {"10.2.0.192.in-addr.arpa. 30 web.shop.example.org."})
        soa = await aquery("example.org", "SOA", port)
        assert soa.answer[0][0].mname.to_text() == "ns1.ns.example.org."
        assert await ask(port, "www.example.org") == ("NOERROR", {"www.example.org. 300 192.0.2.80"})  # the file
        assert (await ask(port, "99.2.0.192.in-addr.arpa", "PTR"))[0] == "NXDOMAIN"  # not passed on

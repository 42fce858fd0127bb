"""k8s_external from a snapshot: every kind of name CoreDNS 1.15's plugin answers (load balancer
and external addresses, SRV, the apex, the name server's names, headless endpoints, PTR), its
TTLs, fallthrough, and answers kept until what they read changes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from interkube.corefile.parser import parse_text
from interkube.errors import ConfigError
from interkube.plugin.services import Services
from interkube.server.runtime import build
from testkit.fakekube import FakeKube, unreachable_kubeconfig, write_kubeconfig, write_snapshot
from testkit.servers import free_port
from testkit.waiting import until

from k8s_external_data import load_balancer, objects

Running = Any  # tests/plugins/conftest.py's Running
Serve = Callable[[str], Awaitable[Running]]
NOERROR, NXDOMAIN, SERVFAIL = "NOERROR", "NXDOMAIN", "SERVFAIL"


def records(msg: dns.message.Message, section: str = "answer") -> set[str]:
    return {f"{r.name} {r.ttl} {dns.rdatatype.to_text(r.rdtype)} {rd}".lower()
            for r in getattr(msg, section) for rd in r}


async def ask(k: Running, name: str, rdtype: str = "A") -> tuple[str, set[str]]:
    msg = await k.query(name, rdtype)
    if msg.rcode() != dns.rcode.SERVFAIL:
        assert msg.flags & dns.flags.AA
        if not msg.answer:  # NXDOMAIN and NODATA carry the zone's SOA
            assert [r.rdtype for r in msg.authority] == [dns.rdatatype.SOA], msg
    return dns.rcode.to_text(msg.rcode()), records(msg)


def corefile(snapshot: Path, *options: str, zones: str = "example.org", stanza: str = "ttl 30",
             plugin: str = "kubernetes", extra: str = "") -> str:
    body = "".join(f"        {o}\n" for o in options)
    return f""".:PORT {{
    bind 127.0.0.1
    {plugin} cluster.local {{
        snapshot {snapshot}
        {stanza}
    }}
    k8s_external {zones} {{
{body}    }}
{extra}}}
"""


@pytest.fixture
async def k(serve: Serve, cluster: Path) -> Running:
    return await serve(corefile(cluster, "ttl 10"))


Z = "shop.example.org."


async def test_load_balancer_and_external_addresses(k: Running) -> None:
    assert await ask(k, "web.shop.example.org") == (NOERROR, {f"web.{Z} 10 a 192.0.2.10"})
    assert await ask(k, "web.shop.example.org", "AAAA") == (NOERROR, {f"web.{Z} 10 aaaa 2001:db8::10"})
    assert await ask(k, "ext.shop.example.org") == (NOERROR, {f"ext.{Z} 10 a 192.0.2.11"})
    assert await ask(k, "ext.shop.example.org", "AAAA") == (NOERROR, set())  # NODATA
    assert await ask(k, "web.shop.example.org", "TXT") == (NOERROR, set())
    # A load balancer known by its hostname: a CNAME, with the stanza's TTL (as CoreDNS).
    assert await ask(k, "host.shop.example.org") == (NOERROR, {f"host.{Z} 30 cname lb-1.elb.example.com."})
    # The endpoint label is not looked at: the Service's external addresses.
    assert await ask(k, "anything.web.shop.example.org") == (NOERROR, {f"anything.web.{Z} 10 a 192.0.2.10"})
    # A headless Service with external addresses answers with those.
    assert await ask(k, "hlext.shop.example.org") == (NOERROR, {f"hlext.{Z} 10 a 192.0.2.12"})


async def test_names_without_external_addresses(k: Running) -> None:
    assert await ask(k, "plain.shop.example.org") == (NXDOMAIN, set())
    assert await ask(k, "db.shop.example.org") == (NXDOMAIN, set())  # headless: only with `headless`
    assert await ask(k, "db-0.db.shop.example.org") == (NXDOMAIN, set())
    assert await ask(k, "missing.shop.example.org") == (NXDOMAIN, set())
    assert await ask(k, "a.b.c.web.shop.example.org") == (NXDOMAIN, set())
    assert await ask(k, "shop.example.org") == (NOERROR, set())   # a namespace: NODATA
    assert await ask(k, "empty.example.org") == (NOERROR, set())
    assert await ask(k, "nowhere.example.org") == (NXDOMAIN, set())
    assert await ask(k, "web.nowhere.example.org") == (NXDOMAIN, set())
    # The stanza's own zone is the kubernetes plugin's.
    assert await ask(k, "web.shop.svc.cluster.local") == (NOERROR, {"web.shop.svc.cluster.local. 30 a 10.96.1.10"})


async def test_srv_records_target_the_service_with_the_stanzas_ttl(k: Running) -> None:
    msg = await k.query("web.shop.example.org", "SRV")
    assert records(msg) == {f"web.{Z} 30 srv 0 25 80 web.{Z}", f"web.{Z} 30 srv 0 25 443 web.{Z}"}
    assert records(msg, "additional") == {f"web.{Z} 10 a 192.0.2.10", f"web.{Z} 10 aaaa 2001:db8::10"}
    msg = await k.query("_https._tcp.web.shop.example.org", "SRV")
    assert records(msg) == {f"_https._tcp.web.{Z} 30 srv 0 50 443 web.{Z}"}
    assert await ask(k, "_https._udp.web.shop.example.org", "SRV") == (NXDOMAIN, set())
    assert await ask(k, "_dns._udp.ext.shop.example.org", "SRV") == (
        NOERROR, {f"_dns._udp.ext.{Z} 30 srv 0 100 53 ext.{Z}"})
    msg = await k.query("host.shop.example.org", "SRV")
    assert records(msg) == {f"host.{Z} 30 srv 0 100 80 lb-1.elb.example.com."} and not msg.additional


async def test_the_apex_and_the_name_servers_names(k: Running) -> None:
    soa = await k.query("example.org", "SOA")
    [rr] = soa.answer
    assert (rr.ttl, rr[0].mname.to_text(), rr[0].rname.to_text()) == (10, "ns1.dns.example.org.",
                                                                     "hostmaster.dns.example.org.")
    assert (rr[0].refresh, rr[0].retry, rr[0].expire, rr[0].minimum) == (7200, 1800, 86400, 10)
    assert await ask(k, "example.org", "NS") == (NOERROR, {"example.org. 10 ns ns1.dns.example.org."})
    assert await ask(k, "example.org", "A") == (NOERROR, set())
    assert await ask(k, "dns.example.org") == (NOERROR, set())
    # This server listens on loopback only: no addresses of its own to give (NODATA).
    assert await ask(k, "ns1.dns.example.org") == (NOERROR, set())
    assert await ask(k, "x.dns.example.org") == (NXDOMAIN, set())
    assert await ask(k, "a.ns1.dns.example.org") == (NXDOMAIN, set())


async def test_headless_endpoints_and_another_apex(serve: Serve, cluster: Path) -> None:
    k = await serve(corefile(cluster, "headless", "apex ns", stanza="endpoint_pod_names"))
    assert await ask(k, "db.shop.example.org") == (NOERROR, {f"db.{Z} 5 a 10.244.1.5", f"db.{Z} 5 a 10.244.1.6"})
    assert await ask(k, "db-0.db.shop.example.org") == (NOERROR, {f"db-0.db.{Z} 5 a 10.244.1.5"})
    assert await ask(k, "db-pod-1.db.shop.example.org") == (NOERROR, {f"db-pod-1.db.{Z} 5 a 10.244.1.6"})
    assert await ask(k, "db-2.db.shop.example.org") == (NXDOMAIN, set())  # not ready
    msg = await k.query("db.shop.example.org", "SRV")
    assert records(msg) == {f"db.{Z} 5 srv 0 50 5432 db-0.db.{Z}", f"db.{Z} 5 srv 0 50 5432 db-pod-1.db.{Z}"}
    assert records(msg, "additional") == {f"db-0.db.{Z} 5 a 10.244.1.5", f"db-pod-1.db.{Z} 5 a 10.244.1.6"}
    # A ClusterIP Service's endpoint by name, but not the Service itself.
    assert await ask(k, "web-0.plain.shop.example.org") == (NOERROR, {f"web-0.plain.{Z} 5 a 10.244.2.5"})
    assert await ask(k, "plain.shop.example.org") == (NXDOMAIN, set())
    assert await ask(k, "hlext.shop.example.org") == (NOERROR, {f"hlext.{Z} 5 a 192.0.2.12"})
    soa = await k.query("example.org", "SOA")
    assert soa.answer[0][0].mname.to_text() == "ns1.ns.example.org."
    assert await ask(k, "ns.example.org") == (NOERROR, set())
    assert await ask(k, "dns.example.org") == (NXDOMAIN, set())  # a namespace now, and none exists


async def test_ptr_in_a_reverse_zone_of_the_plugin(serve: Serve, cluster: Path) -> None:
    k = await serve(corefile(cluster, zones="example.org in-addr.arpa ip6.arpa"))
    assert await ask(k, "10.2.0.192.in-addr.arpa", "PTR") == (
        NOERROR, {"10.2.0.192.in-addr.arpa. 5 ptr web.shop.example.org."})
    v6 = "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
    assert await ask(k, v6, "PTR") == (NOERROR, {f"{v6}. 5 ptr web.shop.example.org."})
    assert await ask(k, "99.2.0.192.in-addr.arpa", "PTR") == (NXDOMAIN, set())
    assert await ask(k, "web.shop.example.org", "PTR") == (NOERROR, set())


async def test_fallthrough_passes_names_the_cluster_lacks_not_the_apexs(serve: Serve, cluster: Path,
                                                                       tmp_path: Path) -> None:
    zone = tmp_path / "db.example.org"
    zone.write_text("@ 300 IN SOA ns admin 1 7200 1800 86400 30\n@ 300 IN NS ns\nns 300 IN A 192.0.2.53\n"
                    "www 300 IN A 192.0.2.80\nx.dns 300 IN A 192.0.2.81\n")
    k = await serve(corefile(cluster, "fallthrough", extra=f"    file {zone} example.org\n"))
    assert await ask(k, "www.example.org") == (NOERROR, {"www.example.org. 300 a 192.0.2.80"})
    assert await ask(k, "web.shop.example.org") == (NOERROR, {f"web.{Z} 5 a 192.0.2.10"})
    assert await ask(k, "x.dns.example.org") == (NXDOMAIN, set())  # the apex's names are its own


async def test_kubernetai_stanzas_serve_too_the_first_one(serve: Serve, cluster: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    write_snapshot(other, [load_balancer("shop", "web", [{"ip": "198.51.100.1"}])])
    k = await serve(f""".:PORT {{
    bind 127.0.0.1
    kubernetai cluster.local {{
        snapshot {cluster}
    }}
    kubernetai cluster.other {{
        snapshot {other}
    }}
    k8s_external example.org
}}
""")
    assert await ask(k, "web.shop.example.org") == (NOERROR, {f"web.{Z} 5 a 192.0.2.10"})


def test_a_block_without_a_kubernetes_stanza_is_refused_at_the_plugins_line() -> None:
    text = ".:53 {\n  hosts {\n    192.0.2.1 a.example.org\n  }\n  k8s_external example.org\n}\n"
    with pytest.raises(ConfigError) as info:
        build(parse_text(text, "Corefile"), "Corefile", Services())
    assert str(info.value).startswith("Corefile:5: k8s_external: needs the cluster's `kubernetes` (or "
                                      "`kubernetai`) stanza in the same server block")


async def test_answers_are_kept_until_what_they_read_changes(serve: Serve, tmp_path: Path) -> None:
    async with FakeKube(watch=True) as fake:
        fake.add_all(objects())
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"c": fake})
        k = await serve(f""".:PORT {{
    bind 127.0.0.1
    kubernetes cluster.local {{
        kubeconfig {kubeconfig}
    }}
    k8s_external example.org
}}
""")
        handler = k.handler("k8s_external")
        assert await ask(k, "web.shop.example.org") == (NOERROR, {f"web.{Z} 5 a 192.0.2.10"})
        assert await ask(k, "ext.shop.example.org") == (NOERROR, {f"ext.{Z} 5 a 192.0.2.11"})
        built = handler.built
        assert await ask(k, "web.shop.example.org") == (NOERROR, {f"web.{Z} 5 a 192.0.2.10"})
        assert handler.built == built  # from the kept answer
        # The load balancer gets another address: that answer goes, the other stays.
        fake.add(load_balancer("shop", "web", [{"ip": "192.0.2.20"}], cluster_ips=["10.96.1.10"],
                               ports=[("http", 80, "TCP"), ("https", 443, "TCP")]))

        async def moved() -> bool:
            return await ask(k, "web.shop.example.org") == (NOERROR, {f"web.{Z} 5 a 192.0.2.20"})

        await until(moved, "the new load balancer address answered", 10)
        built = handler.built
        assert await ask(k, "ext.shop.example.org") == (NOERROR, {f"ext.{Z} 5 a 192.0.2.11"})
        assert handler.built == built
        # A Service that gains one (a load balancer provisioned later) appears.
        fake.add(load_balancer("shop", "late", [{"ip": "192.0.2.30"}], cluster_ips=["10.96.1.30"]))

        async def appeared() -> bool:
            return await ask(k, "late.shop.example.org") == (NOERROR, {f"late.{Z} 5 a 192.0.2.30"})

        await until(appeared, "the new load balancer answered", 10)


async def test_before_the_first_sync_servfail_or_fallthrough(serve: Serve, tmp_path: Path) -> None:
    # The cluster's API does not answer: no first sync. Its external zone answers SERVFAIL, or
    # with fallthrough passes the names on (here to a zone file).
    kubeconfig = unreachable_kubeconfig(tmp_path / "gone.kubeconfig", free_port())
    zone = tmp_path / "db.other.org"
    zone.write_text("@ 300 IN SOA ns admin 1 7200 1800 86400 30\n@ 300 IN NS ns\nns 300 IN A 192.0.2.53\n"
                    "web.shop 300 IN A 192.0.2.90\n")
    stanza = f"kubernetes cluster.local {{\n        kubeconfig {kubeconfig}\n        startup_timeout 50ms\n    }}"
    k = await serve(f"""example.org:PORT {{
    bind 127.0.0.1
    {stanza}
    k8s_external
}}
other.org:PORT {{
    bind 127.0.0.1
    {stanza}
    k8s_external {{
        fallthrough
    }}
    file {zone}
}}
""")
    assert (await ask(k, "web.shop.example.org"))[0] == SERVFAIL
    assert await ask(k, "web.shop.other.org") == (NOERROR, {"web.shop.other.org. 300 a 192.0.2.90"})

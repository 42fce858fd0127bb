"""Every example of the autopath plugin's README, started as written (on a free port; the upstream
on loopback a fake one, the kubeconfig the test API server's, the files the README shows in a
working directory of the test's) and asked what the README says it answers."""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from interkube.plugin import searchpath
from testkit.fakeupstream import FakeUpstream
from testkit.waiting import until

Serve = Callable[[str], Awaitable[Any]]
README = Path(__file__).resolve().parents[3] / "src" / "interkube" / "plugins" / "autopath" / "README.md"
FENCE = re.compile(r"^~~~ corefile\n(.*?)^~~~", re.M | re.S)
KUBECONFIG = "/etc/interkube/kubeconfig"


def examples() -> list[str]:
    return FENCE.findall(README.read_text())


def shown_file(name: str) -> str:
    """The text the README shows for the file ``name`` (the txt block after "`name`:")."""
    m = re.search(rf"`{re.escape(name)}`:\n\n~~~ txt\n(.*?)^~~~", README.read_text(), re.M | re.S)
    assert m is not None, name
    return m.group(1)


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    up = await FakeUpstream().start()
    up.behaviour.records = {("www.example.com.", "A"): ["192.0.2.1"]}
    yield up
    await up.stop()


class Example:
    def __init__(self, srv: Any, request: pytest.FixtureRequest) -> None:
        self.port: int = srv.port
        self.request = request

    async def ask(self, name: str, source: str = "127.0.0.1") -> dns.message.Message:
        q = dns.message.make_query(name, "A")
        return await dns.asyncquery.udp(q, "127.0.0.1", port=self.port, timeout=3, source=source)


def lines(msg: dns.message.Message) -> list[str]:
    return [f"{rrset.name} {rrset.ttl} {dns.rdatatype.to_text(rrset.rdtype)} {rd}"
            for rrset in msg.answer for rd in rrset]


async def kubernetes_pods(ex: Example) -> None:
    kube = ex.request.getfixturevalue("kube")
    api = ex.request.getfixturevalue("kube_api")
    pod_ip = f"127.{random.randrange(100, 200)}.{random.randrange(256)}.{random.randrange(10, 250)}"
    for ns in ("shop", "data"):
        kube.namespace(ns)
    try:
        web = kube.service("shop", "web", ports=[("http", 80, "TCP")])
        db = kube.service("data", "db", ports=[("pg", 5432, "TCP")])
        kube.pod("shop", "client", ips=[pod_ip])

        async def walked() -> dns.message.Message | None:
            r = await ex.ask("db.data.shop.svc.cluster.local", pod_ip)
            return r if r.answer else None

        r = await until(walked, "the pod's walk answered")
        assert lines(r) == ["db.data.shop.svc.cluster.local. 5 CNAME db.data.svc.cluster.local.",
                            f"db.data.svc.cluster.local. 5 A {db.spec.clusterIP}"]
        assert lines(await ex.ask("web.shop.svc.cluster.local", pod_ip)) == [
            f"web.shop.svc.cluster.local. 5 A {web.spec.clusterIP}"]
        assert lines(await ex.ask("www.example.com.shop.svc.cluster.local", pod_ip)) == [
            "www.example.com.shop.svc.cluster.local. 30 CNAME www.example.com.", "www.example.com. 30 A 192.0.2.1"]
        assert (await ex.ask("nope.shop.svc.cluster.local", pod_ip)).rcode() == dns.rcode.NXDOMAIN
        assert (await ex.ask("db.data.shop.svc.cluster.local")).rcode() == dns.rcode.NXDOMAIN
    finally:
        for ns in ("shop", "data"):
            api.delete_namespace(ns)


async def own_search_list(ex: Example) -> None:
    assert lines(await ex.ask("www.eu.example.org")) == ["www.eu.example.org. 300 A 192.0.2.81"]
    assert lines(await ex.ask("ns.eu.example.org")) == ["ns.eu.example.org. 3600 CNAME ns.example.org.",
                                                         "ns.example.org. 3600 A 192.0.2.53"]
    r = await ex.ask("mail.eu.example.org")
    assert r.rcode() == dns.rcode.NXDOMAIN and r.question[0].name.to_text() == "mail.eu.example.org."
    assert lines(await ex.ask("www.example.org")) == ["www.example.org. 300 A 192.0.2.80"]


#: What each example, in README order, is said to do.
CHECKS = [kubernetes_pods, own_search_list]


def test_every_example_is_checked() -> None:
    assert len(examples()) == len(CHECKS)


@pytest.mark.parametrize("index", range(len(CHECKS)), ids=[c.__name__ for c in CHECKS])
async def test_readme_example(index: int, serve: Serve, upstream: FakeUpstream, request: pytest.FixtureRequest,
                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = examples()[index]
    text = re.sub(r"^(\S+):5353 \{", r"\1:PORT {", text, flags=re.M).replace("127.0.0.1:5300", upstream.address)
    if KUBECONFIG in text:
        text = text.replace(KUBECONFIG, str(request.getfixturevalue("kube_api").kubeconfig))
    # The files the README shows, where its relative paths find them; no host search domains.
    for name in ("my-resolv.conf", "db.example.org"):
        (tmp_path / name).write_text(shown_file(name))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "host-resolv.conf").write_text("nameserver 192.0.2.53\n")
    monkeypatch.setattr(searchpath, "RESOLV_CONF", tmp_path / "host-resolv.conf")
    srv = await serve(text)
    await CHECKS[index](Example(srv, request))

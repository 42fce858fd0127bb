"""The DNS-over-HTTPS server of https:// server blocks (RFC 8484) against real clients:
dnspython's dns.query.https (HTTP/2 and HTTP/1.1, POST and GET), kdig +https, curl --doh-url,
and httpx2 for the HTTP statuses and many streams on one connection. All on loopback."""

from __future__ import annotations

import asyncio
import base64
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import dns.asyncquery
import dns.message
import dns.rcode
import dns.rrset
import httpx2
import pytest

from interkube.server.doh import max_age
from testkit.dot import SERVER_NAME, Pki
from testkit.fakeupstream import FakeUpstream
from testkit.servers import free_port, in_process

HOSTS = " hosts {\n  192.0.2.53 web.example\n  ttl 120\n }\n"


def doh_block(port: int, pki: Pki | None, body: str = HOSTS) -> str:
    tls = f" tls {pki.crt('server')} {pki.key('server')}\n" if pki is not None else ""
    return f"https://.:{port} {{\n bind 127.0.0.1\n{tls}{body}}}\n"


@pytest.fixture
async def doh(pki: Pki) -> AsyncIterator[int]:
    port = free_port()
    async with in_process(doh_block(port, pki)):
        yield port


def query(name: str = "web.example.", rdtype: str = "A") -> dns.message.Message:
    q = dns.message.make_query(name, rdtype)
    q.id = 0
    return q


@pytest.mark.parametrize("version", [dns.asyncquery.HTTPVersion.H2, dns.asyncquery.HTTPVersion.H1])
@pytest.mark.parametrize("post", [True, False])
async def test_dnspython_https(doh: int, pki: Pki, version: dns.asyncquery.HTTPVersion, post: bool) -> None:
    ctx = ssl.create_default_context(cafile=str(pki.crt("ca")))
    resp = await dns.asyncquery.https(query(), "127.0.0.1", port=doh, verify=ctx, post=post,
                                      http_version=version, timeout=5)
    assert resp.rcode() == dns.rcode.NOERROR
    assert [rr.to_text() for rr in resp.answer] == ["web.example. 120 IN A 192.0.2.53"]
    nodata = await dns.asyncquery.https(query(rdtype="AAAA"), "127.0.0.1", port=doh, verify=ctx,
                                        post=post, http_version=version, timeout=5)
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer


def _client(pki: Pki, http2: bool = True) -> httpx2.AsyncClient:
    ctx = ssl.create_default_context(cafile=str(pki.crt("ca")))
    return httpx2.AsyncClient(verify=ctx, http2=http2, http1=not http2, trust_env=False)


async def test_one_http2_connection_carries_many_queries_answered_as_they_complete(pki: Pki) -> None:
    up = await FakeUpstream().start()
    up.behaviour.records = {("slow.example.", "A"): ["192.0.2.1"]}
    up.behaviour.gate = asyncio.Event()
    port = free_port()
    body = HOSTS.replace(" }\n", "  fallthrough\n }\n") + f" forward . {up.address}\n"
    try:
        async with in_process(doh_block(port, pki, body)), _client(pki) as client:
            url = f"https://127.0.0.1:{port}/dns-query"
            headers = {"content-type": "application/dns-message", "accept": "application/dns-message"}
            slow = [asyncio.ensure_future(client.post(url, content=query("slow.example.").to_wire(), headers=headers))
                    for _ in range(20)]
            # While 20 forwarded queries wait on the upstream, a name from memory is answered.
            fast = await client.post(url, content=query().to_wire(), headers=headers)
            assert fast.http_version == "HTTP/2" and fast.status_code == 200
            assert not any(t.done() for t in slow)
            up.behaviour.gate.set()
            answers = await asyncio.gather(*slow)
            assert {dns.message.from_wire(r.content).answer[0][0].to_text() for r in answers} == {"192.0.2.1"}
            assert len(client._transport._pool.connections) == 1  # type: ignore[attr-defined]
    finally:
        await up.stop()


async def test_headers_and_http_errors(doh: int, pki: Pki) -> None:
    base = f"https://127.0.0.1:{doh}"
    wire = query().to_wire()
    b64 = base64.urlsafe_b64encode(wire).rstrip(b"=").decode()
    async with _client(pki) as client:
        ok = await client.get(f"{base}/dns-query", params={"dns": b64})
        assert ok.status_code == 200
        assert ok.headers["content-type"] == "application/dns-message"
        assert ok.headers["cache-control"] == "max-age=120"  # the answer's TTL
        assert int(ok.headers["content-length"]) == len(ok.content)
        assert (await client.get(f"{base}/other", params={"dns": b64})).status_code == 404
        assert (await client.get(f"{base}/dns-query")).status_code == 400
        assert (await client.get(f"{base}/dns-query", params={"dns": "!!!"})).status_code == 400
        assert (await client.put(f"{base}/dns-query", content=wire)).status_code == 400
        assert (await client.post(f"{base}/dns-query", content=b"\x00\x01")).status_code == 400
        # A response is not a query.
        resp = dns.message.make_response(query()).to_wire()
        assert (await client.post(f"{base}/dns-query", content=resp)).status_code == 400


async def test_a_dropped_query_is_500(pki: Pki) -> None:
    port = free_port()
    async with in_process(doh_block(port, pki, " acl {\n  drop\n }\n" + HOSTS)), _client(pki) as client:
        r = await client.post(f"https://127.0.0.1:{port}/dns-query", content=query().to_wire())
        assert r.status_code == 500


async def test_malformed_query_is_formerr(doh: int, pki: Pki) -> None:
    wire = bytearray(query().to_wire())
    wire[5] = 2  # two questions, one present
    async with _client(pki) as client:
        r = await client.post(f"https://127.0.0.1:{doh}/dns-query", content=bytes(wire))
    assert r.status_code == 200 and dns.rcode.from_flags(r.content[2] << 8 | r.content[3], 0) == dns.rcode.FORMERR


async def test_without_tls_the_block_speaks_cleartext_http(pki: Pki) -> None:
    port = free_port()
    async with in_process(doh_block(port, None)):
        url = f"http://127.0.0.1:{port}/dns-query"
        for http2 in (False, True):  # HTTP/1.1, and HTTP/2 with prior knowledge (h2c)
            async with httpx2.AsyncClient(http2=http2, http1=not http2, trust_env=False) as client:
                r = await client.post(url, content=query().to_wire())
                assert r.status_code == 200 and r.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
                assert dns.message.from_wire(r.content).answer[0][0].to_text() == "192.0.2.53"


async def _run(*argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    return out.decode()


@pytest.mark.skipif(shutil.which("kdig") is None, reason="kdig (knot-dnsutils) is not installed")
@pytest.mark.parametrize("method", ["+https", "+https-get"])
async def test_kdig_https(doh: int, pki: Pki, method: str) -> None:
    out = await _run("kdig", "@127.0.0.1", "-p", str(doh), method, f"+tls-ca={pki.crt('ca')}",
                     f"+tls-hostname={SERVER_NAME}", "web.example", "A")
    assert f"(HTTP/2-{'GET' if method.endswith('get') else 'POST'})" in out and "(status: 200)" in out, out
    assert "status: NOERROR" in out and "192.0.2.53" in out, out


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_curl_resolves_through_the_doh_server(pki: Pki) -> None:
    # curl --doh-url asks our DoH server for web.example (A and AAAA), then fetches from the
    # address it got: a loopback HTTP server.
    from aiohttp import web

    async def hello(request: Any) -> web.Response:
        return web.Response(text="hello from web.example\n")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    web_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", web_port).start()
    port = free_port()
    hosts = HOSTS.replace("192.0.2.53", "127.0.0.1")
    try:
        async with in_process(doh_block(port, pki, hosts)):
            out = await _run("curl", "-sS", "--max-time", "10", "--cacert", str(pki.crt("ca")),
                             "--doh-url", f"https://127.0.0.1:{port}/dns-query", f"http://web.example:{web_port}/")
    finally:
        await runner.cleanup()
    assert out == "hello from web.example\n"


def test_max_age_follows_coredns() -> None:
    q = query()
    resp = dns.message.make_response(q)
    assert max_age(resp.to_wire()) == 5  # no records
    resp.answer.append(dns.rrset.from_text("web.example.", 30, "IN", "A", "192.0.2.1"))
    resp.additional.append(dns.rrset.from_text("web.example.", 7200, "IN", "A", "192.0.2.1"))
    assert max_age(resp.to_wire()) == 30
    resp.answer[0].ttl = 86400
    assert max_age(resp.to_wire()) == 3600
    resp.set_rcode(dns.rcode.SERVFAIL)
    assert max_age(resp.to_wire()) == 5


"""forward's DNS-over-HTTPS upstreams (`forward . https://...`) against a real DoH server:
CoreDNS 1.15 serving an https:// block (in front of unbound), and interkube's own DoH server.
All on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import dns.message
import dns.rcode
import pytest

from interkube.errors import TlsVerificationFailed, UpstreamError
from interkube.plugins.forward.handler import ForwardHandler
from interkube.upstream.doh import DohExchanger
from interkube.upstream.tls import client_context
from testkit.coredns import CoreDNS
from testkit.dot import SERVER_NAME, Pki
from testkit.peers import free_udp_tcp_port
from testkit.servers import aquery, free_port, in_process, unbound

RECORDS = ["a.example. 300 IN A 192.0.2.10", "b.example. 300 IN AAAA 2001:db8::b",
           "c.example. 60 IN A 192.0.2.12"]


@pytest.fixture
def coredns_doh(coredns: Callable[..., CoreDNS], pki: Pki) -> Any:
    """CoreDNS serving DNS over HTTPS on a port of its own, forwarding to unbound."""
    up_port, doh_port = free_port(), free_udp_tcp_port()
    with unbound(up_port, RECORDS):
        core = (f"https://.:{doh_port} {{\n bind 127.0.0.1\n tls {pki.crt('server')} {pki.key('server')}\n"
                f" forward . 127.0.0.1:{up_port}\n}}\n"
                ". {\n bind 127.0.0.1\n whoami\n}\n")
        coredns(core)
        yield doh_port


def forward_block(port: int, doh_port: int, pki: Pki, options: str = "") -> str:
    return (f"example:{port} {{\n bind 127.0.0.1\n forward . https://127.0.0.1:{doh_port} {{\n"
            f"  tls {pki.crt('ca')}\n  tls_servername {SERVER_NAME}\n{options} }}\n}}\n")


@pytest.mark.peers
@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_forward_to_coredns_over_doh(coredns_doh: int, pki: Pki, method: str) -> None:
    port = free_port()
    async with in_process(forward_block(port, coredns_doh, pki, f"  doh_method {method}\n")) as server:
        a = await aquery("a.example.", "A", port)
        assert a.rcode() == dns.rcode.NOERROR and a.answer[0].to_text() == "a.example. 300 IN A 192.0.2.10"
        tcp = await aquery("b.example.", "AAAA", port, tcp=True)
        assert tcp.answer[0][0].to_text() == "2001:db8::b"
        assert (await aquery("missing.example.", "A", port)).rcode() == dns.rcode.NXDOMAIN
        # Many at once: all on one HTTP/2 connection (connection reuse), each its own stream.
        answers = await asyncio.gather(*(aquery("c.example.", "A", port) for _ in range(50)))
        assert all(r.answer[0][0].to_text() == "192.0.2.12" for r in answers)
        forward = next(h for h in server.instance.built.handlers  # type: ignore[attr-defined]
                       if isinstance(h, ForwardHandler))
        doh = forward.upstreams[0].doh
        assert doh is not None and doh.method == method
        assert _connections(doh) == 1


def _connections(doh: DohExchanger) -> int:
    """The HTTP connections the exchanger's pool holds (httpx2's transport keeps them in _pool)."""
    return len(doh._transport._pool.connections)


async def test_doh_exchanger_against_interkube_doh_server(pki: Pki) -> None:
    up_port, doh_port = free_port(), free_port()
    with unbound(up_port, RECORDS):
        core = (f"https://.:{doh_port} {{\n bind 127.0.0.1\n tls {pki.crt('server')} {pki.key('server')}\n"
                f" forward . 127.0.0.1:{up_port}\n}}\n")
        async with in_process(core):
            doh = DohExchanger("127.0.0.1", doh_port, ssl_context=client_context(ca=str(pki.crt("ca"))),
                               server_name=SERVER_NAME)
            try:
                q = dns.message.make_query("a.example.", "A")
                q.id = 4321
                resp = await doh.exchange(q.to_wire(), 3.0)
                msg = dns.message.from_wire(resp)
                assert msg.id == 0  # RFC 8484 section 4.1: the query went out with ID 0
                assert msg.answer[0][0].to_text() == "192.0.2.10"
                await asyncio.gather(*(doh.exchange(q.to_wire(), 3.0) for _ in range(20)))
                assert _connections(doh) == 1
            finally:
                doh.close()


async def test_doh_refusals_are_named(pki: Pki) -> None:
    up_port, doh_port = free_port(), free_port()
    with unbound(up_port, RECORDS):
        core = (f"https://.:{doh_port} {{\n bind 127.0.0.1\n tls {pki.crt('server-other')} "
                f"{pki.key('server-other')}\n forward . 127.0.0.1:{up_port}\n}}\n")
        async with in_process(core):
            doh = DohExchanger("127.0.0.1", doh_port, ssl_context=client_context(ca=str(pki.crt("ca"))),
                               server_name=SERVER_NAME)
            q = dns.message.make_query("a.example.", "A").to_wire()
            with pytest.raises(TlsVerificationFailed, match="not signed by a CA we trust"):
                await doh.exchange(q, 3.0)
            doh.close()
    closed = DohExchanger("127.0.0.1", free_port(), ssl_context=client_context(ca=str(pki.crt("ca"))))
    with pytest.raises(UpstreamError, match="refused"):
        await closed.exchange(q, 3.0)
    closed.close()


async def test_an_http_error_status_is_an_upstream_error(pki: Pki) -> None:
    # A DoH server that answers 500 (its chain dropped the query: acl's drop): the query fails
    # with the status, the body is not taken for an answer.
    doh_port = free_port()
    core = (f"https://.:{doh_port} {{\n bind 127.0.0.1\n tls {pki.crt('server')} {pki.key('server')}\n"
            " acl {\n  drop\n }\n whoami\n}\n")
    async with in_process(core):
        doh = DohExchanger("127.0.0.1", doh_port, ssl_context=client_context(ca=str(pki.crt("ca"))),
                           server_name=SERVER_NAME)
        with pytest.raises(UpstreamError, match="HTTP status 500"):
            await doh.exchange(dns.message.make_query("a.example.", "A").to_wire(), 3.0)
        doh.close()

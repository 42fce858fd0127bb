"""forward tls://: every refusal is refused and reported with its reason (forward's own line, the
errors plugin, the health check), reconnects back off, and the TLS 1.3 late alert is named."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import dns.message
import dns.rcode
import pytest
from tls_helpers import LOOPBACK, NAME, SERVER_NAME, Pki, dot_server, forwarder_corefile, messages, wait_until

from interkube.errors import TlsVerificationFailed, UpstreamError
from testkit.fakeupstream import FakeUpstream
from testkit.servers import aquery, free_port, in_process
from interkube.upstream.transport import Backoff, ConnectionClosed, StreamExchanger


@dataclass(frozen=True)
class Case:
    server_cert: str = "server"
    verify_name: str = SERVER_NAME
    client_cert: str | None = "client"
    reason: str = ""          # what forward reports
    server_reason: str = ""   # what the DoT server logs ("" when the client gives up first)


CASES = {
    "wrong server name": Case(verify_name="dns.elsewhere",
                              reason="the server's certificate is not valid for the name we verify (dns.elsewhere)"),
    "untrusted CA": Case(server_cert="server-other",
                         reason="the server's certificate is not signed by a CA we trust"),
    "expired certificate": Case(server_cert="server-expired", reason="the server's certificate has expired"),
    "missing client certificate": Case(
        client_cert=None, reason="the server requires a client certificate and we sent none (TLS alert certificate_required)",
        server_reason="the client sent no certificate and client_auth requires one"),
    "untrusted client certificate": Case(
        client_cert="client-other", reason="the server does not trust the CA that signed our client certificate",
        server_reason="the client's certificate is not signed by a CA we trust"),
    "expired client certificate": Case(
        client_cert="client-expired", reason="the server says our client certificate has expired",
        server_reason="the client's certificate has expired"),
}


def forwarder(pki: Pki, port: int, dot_port: int, case: Case) -> str:
    tls = (f"tls {pki.crt(case.client_cert)} {pki.key(case.client_cert)} {pki.crt('ca')}"
           if case.client_cert else f"tls {pki.crt('ca')}")
    return forwarder_corefile(port, dot_port, tls, verify_name=case.verify_name,
                              options="  max_fails 1\n  health_check 50ms\n")


@pytest.mark.parametrize("name", list(CASES))
async def test_refusals_are_reported_with_their_reason(pki: Pki, upstream: FakeUpstream, name: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    case = CASES[name]
    async with dot_server(pki, upstream, cert=case.server_cert) as (_, dot_port):
        port = free_port()
        async with in_process(forwarder(pki, port, dot_port, case)):
            resp = await aquery(NAME, "A", port)
            assert resp.rcode() == dns.rcode.SERVFAIL and not resp.answer
            assert not upstream.queries  # nothing got through
            # The health check keeps probing over TLS and marks the upstream down, saying why.
            await wait_until(lambda: any("is down" in m for m in messages(caplog, "interkube.plugin.forward")),
                             "the health check to mark the upstream down")
    forward_lines = messages(caplog, "interkube.plugin.forward")
    refused = [m for m in forward_lines if "refused the TLS connection" in m]
    assert refused and all(case.reason in m for m in refused), forward_lines
    assert len(refused) == 1  # once per reason, not once per query or probe
    assert any(f"is down: {case.reason}" in m for m in forward_lines)
    errors = messages(caplog, "interkube.plugin.errors")
    assert errors and f"2 {NAME}. A: tls://{LOOPBACK}:{dot_port}: {case.reason}" in errors[0]
    if case.server_reason:
        assert any(case.server_reason in m for m in messages(caplog, "interkube.plugin.tls"))


async def test_mtls_required_served_with_a_certificate_of_the_ca(pki: Pki, upstream: FakeUpstream,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    async with dot_server(pki, upstream, client_auth="require_and_verify") as (_, dot_port):
        port = free_port()
        async with in_process(forwarder(pki, port, dot_port, Case())):
            resp = await aquery(NAME, "A", port)
            assert resp.rcode() == dns.rcode.NOERROR and resp.answer
    assert not [m for m in messages(caplog, "interkube.plugin.forward") if "refused" in m]


# --- the exchanger on its own --------------------------------------------------------------------


@pytest.fixture
async def strict_dot(pki: Pki, upstream: FakeUpstream) -> AsyncIterator[int]:
    async with dot_server(pki, upstream) as (_, port):
        yield port


def _query() -> bytes:
    return dns.message.make_query(NAME, "A").to_wire()


async def test_missing_client_certificate_over_tls_1_2(pki: Pki, strict_dot: int) -> None:
    """TLS 1.2 refuses during the handshake: the reason is still the client certificate."""
    ex = StreamExchanger(LOOPBACK, strict_dot, ssl_context=pki.client_context(None, max_version=ssl.TLSVersion.TLSv1_2),
                         server_hostname=SERVER_NAME)
    with pytest.raises(TlsVerificationFailed, match="may require a client certificate .* handshake_failure"):
        await ex.exchange(_query(), 5)
    ex.close()


async def test_missing_client_certificate_over_tls_1_3_is_not_a_bare_eof(pki: Pki, strict_dot: int) -> None:
    ex = StreamExchanger(LOOPBACK, strict_dot, ssl_context=pki.client_context(None), server_hostname=SERVER_NAME)
    with pytest.raises(TlsVerificationFailed, match="requires a client certificate .*certificate_required"):
        await ex.exchange(_query(), 5)
    ex.close()


async def _exchange_against(server: asyncio.Server, pki: Pki) -> None:
    """One query from a TLS client without a certificate to ``server``, which is then closed."""
    port = server.sockets[0].getsockname()[1]
    ex = StreamExchanger(LOOPBACK, port, ssl_context=pki.client_context(None), server_hostname=SERVER_NAME)
    try:
        await ex.exchange(_query(), 5)
    finally:
        ex.close()
        server.close()


async def test_a_server_that_closes_without_an_alert_gets_a_hint(pki: Pki) -> None:
    """asyncio's own TLS server drops a refused client without an alert; say what it likely means."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.crt("server"), pki.key("server"))
    ctx.load_verify_locations(pki.crt("ca"))
    ctx.verify_mode = ssl.CERT_REQUIRED
    server = await asyncio.start_server(lambda r, w: None, LOOPBACK, 0, ssl=ctx)
    with pytest.raises(ConnectionClosed, match="right after the TLS 1.3 handshake, before any answer"):
        await _exchange_against(server, pki)


async def test_an_upstream_that_does_not_speak_tls(pki: Pki) -> None:
    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(5)  # the ClientHello's record header, then a plain-text reply
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(plain, LOOPBACK, 0)
    with pytest.raises(TlsVerificationFailed, match="does not speak TLS on this port"):
        await _exchange_against(server, pki)


class _CountingExchanger(StreamExchanger):
    """A TLS exchanger whose connects are counted and refused (no network, no clock)."""

    connects = 0

    async def _connect(self) -> Any:
        self.connects += 1
        raise TlsVerificationFailed(self.name, "the server's certificate has expired (certificate has expired)")


async def test_reconnects_back_off_after_a_refusal(caplog: pytest.LogCaptureFixture) -> None:
    # A long first delay, so that "at once" below does not depend on how fast this machine is.
    ex = _CountingExchanger(LOOPBACK, 853, ssl_context=ssl.create_default_context(),
                            backoff=Backoff(base=60.0, cap=600.0),
                            log=logging.getLogger("interkube.plugin.forward"))
    assert ex.backoff is not None
    started = asyncio.get_running_loop().time()
    for _ in range(5):
        with pytest.raises(TlsVerificationFailed, match="certificate has expired") as info:
            await ex.exchange(_query(), 1)
    assert ex.connects == 1  # the four others failed at once with the same reason
    assert "next connection attempt in" in str(info.value)
    assert ex.backoff.failures == 1 and ex.backoff.retry_at >= started + 30.0

    ex.backoff.retry_at = 0.0  # the delay has passed
    with pytest.raises(TlsVerificationFailed):
        await ex.exchange(_query(), 1)
    assert ex.connects == 2 and ex.backoff.failures == 2
    assert len([m for m in messages(caplog, "interkube.plugin.forward") if "refused" in m]) == 1

    ex.use_ssl_context(ssl.create_default_context())  # a renewed certificate: try again at once
    with pytest.raises(TlsVerificationFailed):
        await ex.exchange(_query(), 1)
    assert ex.connects == 3


def test_backoff_doubles_with_jitter_up_to_a_cap() -> None:
    b = Backoff(base=0.1, cap=5.0)
    err = UpstreamError("tls://127.0.0.1:853", "refused")
    delays = [b.failed(err, now=100.0) for _ in range(12)]
    for i, d in enumerate(delays):
        nominal = min(5.0, 0.1 * 2 ** i)
        assert nominal / 2 <= d <= nominal
    assert max(delays) <= 5.0 and delays[-1] >= 2.5
    assert b.blocked(100.0) is not None and b.blocked(106.0) is None
    b.succeeded()
    assert b.blocked(100.0) is None and b.failures == 0


async def test_plain_tcp_upstreams_do_not_back_off(upstream: FakeUpstream) -> None:
    assert StreamExchanger(LOOPBACK, upstream.port).backoff is None

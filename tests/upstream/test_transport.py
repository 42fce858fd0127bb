"""The upstream stream exchanger on its own (interkube.upstream.transport): what a TLS refusal
is called (a missing client certificate over TLS 1.2 and 1.3, a server that closes without an
alert, a port that does not speak TLS), and how reconnects back off after a refusal.

forward's and the tls plugin's side of the same refusals are in tests/plugins/tls.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import AsyncIterator
from typing import Any

import dns.message
import pytest

from interkube.errors import TlsVerificationFailed, UpstreamError
from interkube.upstream.transport import Backoff, ConnectionClosed, StreamExchanger
from testkit.dot import ADDRESS, LOOPBACK, NAME, SERVER_NAME, Pki, dot_server, messages
from testkit.fakeupstream import FakeUpstream


@pytest.fixture
async def strict_dot(pki: Pki) -> AsyncIterator[int]:
    """A DoT server (the tls plugin's) that requires and verifies client certificates."""
    backend = await FakeUpstream().start()
    backend.behaviour.records = {(f"{NAME}.", "A"): [ADDRESS]}
    try:
        async with dot_server(pki, backend) as (_, port):
            yield port
    finally:
        await backend.stop()


def _query() -> bytes:
    return dns.message.make_query(NAME, "A").to_wire()


async def test_missing_client_certificate_over_tls_1_2(pki: Pki, strict_dot: int) -> None:
    """TLS 1.2 refuses during the handshake: the reason is still the client certificate."""
    ex = StreamExchanger(LOOPBACK, strict_dot, ssl_context=pki.client_context(None, max_version=ssl.TLSVersion.TLSv1_2),
                         server_hostname=SERVER_NAME)
    with pytest.raises(TlsVerificationFailed, match=r"may require a client certificate .* handshake_failure"):
        await ex.exchange(_query(), 5)
    ex.close()


async def test_missing_client_certificate_over_tls_1_3_is_not_a_bare_eof(pki: Pki, strict_dot: int) -> None:
    ex = StreamExchanger(LOOPBACK, strict_dot, ssl_context=pki.client_context(None), server_hostname=SERVER_NAME)
    with pytest.raises(TlsVerificationFailed, match=r"requires a client certificate .*certificate_required"):
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
    with pytest.raises(ConnectionClosed, match=re.escape("right after the TLS 1.3 handshake, before any answer")):
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


async def test_reconnects_back_off_after_a_refusal(interkube_caplog: pytest.LogCaptureFixture) -> None:
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
    assert len([m for m in messages(interkube_caplog, "interkube.plugin.forward") if "refused" in m]) == 1

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


async def test_plain_tcp_upstreams_do_not_back_off() -> None:
    assert StreamExchanger(LOOPBACK, 53).backoff is None

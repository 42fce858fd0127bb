"""The DoT server on loopback: answers flow from a forwarding interkube, one connection carries
many queries, client_auth behaves as CoreDNS's five modes, refusals are sent and logged."""

from __future__ import annotations

import asyncio
import socket
import ssl
import warnings

import dns.asyncquery
import dns.message
import dns.rcode
import pytest

from interkube.pkg.framing import frame
from interkube.server.listeners import ListenerOptions
from testkit.dot import (
    ADDRESS,
    LOOPBACK,
    NAME,
    SERVER_NAME,
    ZONE,
    Pki,
    dot_corefile,
    dot_query,
    dot_server,
    forwarder_corefile,
    messages,
)
from testkit.fakeupstream import FakeUpstream
from testkit.servers import aquery, free_port, in_process, read_frame


def tls_listener(server):  # type: ignore[no-untyped-def]
    (listener,) = [lst for key, lst in server.instance.listeners.items() if key[0] == "tls"]
    return listener


async def test_forwarding_interkube_to_dot_server(pki: Pki, upstream: FakeUpstream) -> None:
    """Forwarded DNS between clusters over DoT: a local interkube forwards the remote zone over mutual TLS."""
    async with dot_server(pki, upstream) as (remote, dot_port):
        port = free_port()
        tls = f"tls {pki.crt('client')} {pki.key('client')} {pki.crt('ca')}"
        async with in_process(forwarder_corefile(port, dot_port, tls)):
            resp = await aquery(NAME, "A", port)
            assert resp.rcode() == dns.rcode.NOERROR
            assert [rr.address for rr in resp.answer[0]] == [ADDRESS]

            # Many queries at once, over UDP and TCP to the forwarder: all answered, all carried
            # by the one TLS connection the forwarder keeps open (pipelined, not one each).
            names = [f"q{i}.{ZONE}" for i in range(40)]
            upstream.behaviour.records.update({(f"{n}.", "A"): [ADDRESS] for n in names})
            answers = await asyncio.gather(*(aquery(n, "A", port, tcp=i % 2 == 1) for i, n in enumerate(names)))
            assert all(a.rcode() == dns.rcode.NOERROR and a.answer for a in answers)
            assert len(tls_listener(remote).connections) == 1
            assert len(upstream.queries) >= 41


async def test_many_queries_pipelined_on_one_client_connection(pki: Pki, upstream: FakeUpstream) -> None:
    """Queries written back to back before any answer is read all come back (RFC 7858/7766)."""
    names = [f"p{i}.{ZONE}" for i in range(25)]
    upstream.behaviour.records.update({(f"{n}.", "A"): [ADDRESS] for n in names})
    async with dot_server(pki, upstream) as (_, port):
        reader, writer = await asyncio.open_connection(LOOPBACK, port, ssl=pki.client_context(),
                                                       server_hostname=SERVER_NAME)
        wanted = {}
        for i, n in enumerate(names):
            q = dns.message.make_query(n, "A", id=i + 1)
            wanted[i + 1] = n
            writer.write(frame(q.to_wire()))
        await writer.drain()
        got = {}
        for _ in names:
            msg = dns.message.from_wire(await read_frame(reader))
            got[msg.id] = msg.question[0].name.to_text().rstrip(".")
        writer.close()
        assert got == wanted


# --- client_auth: CoreDNS's five modes ---------------------------------------------------------

SERVED, REFUSED = "served", "refused"
#: mode -> outcome for (no certificate, one signed by the CA, one signed by an unknown CA)
MODES = {
    "nocert": (SERVED, SERVED, SERVED),
    "request": (SERVED, SERVED, SERVED),
    "require": (REFUSED, SERVED, SERVED),
    "verify_if_given": (SERVED, SERVED, REFUSED),
    "require_and_verify": (REFUSED, SERVED, REFUSED),
}


@pytest.mark.parametrize("mode", list(MODES))
async def test_client_auth_modes(pki: Pki, upstream: FakeUpstream, mode: str,
                                 caplog: pytest.LogCaptureFixture) -> None:
    async with dot_server(pki, upstream, client_auth=mode) as (_, port):
        outcomes = []
        for client in (None, "client", "client-other"):
            try:
                resp = await dot_query(port, pki.client_context(client))
                outcomes.append(SERVED if resp.answer else f"answered {dns.rcode.to_text(resp.rcode())}")
            except (OSError, EOFError, dns.exception.DNSException):
                outcomes.append(REFUSED)
        assert tuple(outcomes) == MODES[mode]
    logged = "\n".join(messages(caplog, "interkube.plugin.tls"))
    if MODES[mode][0] == REFUSED:
        assert "the client sent no certificate and client_auth requires one" in logged
    if MODES[mode][2] == REFUSED:
        assert "the client's certificate is not signed by a CA we trust" in logged
    if REFUSED not in MODES[mode]:
        assert "refused" not in logged


async def test_tls_1_2_is_served_and_older_versions_are_refused(pki: Pki, upstream: FakeUpstream,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    async with dot_server(pki, upstream) as (_, port):
        resp = await dot_query(port, pki.client_context(max_version=ssl.TLSVersion.TLSv1_2))
        assert resp.answer
        old = pki.client_context()
        with warnings.catch_warnings():  # deprecated: that is the point of the test
            warnings.simplefilter("ignore", DeprecationWarning)
            old.minimum_version = ssl.TLSVersion.TLSv1
            old.maximum_version = ssl.TLSVersion.TLSv1_1
        try:
            old.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this OpenSSL say TLS 1.1 at all
        except ssl.SSLError:
            pytest.skip("this OpenSSL cannot offer TLS 1.1")
        with pytest.raises((OSError, EOFError)):
            await dot_query(port, old)
    assert any("offers only TLS versions older than 1.2" in m or "no TLS version we accept" in m
               for m in messages(caplog, "interkube.plugin.tls"))


async def test_plain_dns_on_the_tls_port_is_refused_and_logged(pki: Pki, upstream: FakeUpstream,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    async with dot_server(pki, upstream, client_auth=None) as (_, port):
        with pytest.raises((OSError, EOFError, dns.exception.DNSException)):
            await dns.asyncquery.tcp(dns.message.make_query(NAME, "A"), LOOPBACK, port=port, timeout=5)
        # The server still serves TLS clients afterwards.
        assert (await dot_query(port, pki.client_context(None))).answer
    assert any("not a TLS client" in m for m in messages(caplog, "interkube.plugin.tls"))


async def test_the_refusal_reaches_the_client_as_an_alert(pki: Pki, upstream: FakeUpstream) -> None:
    """asyncio's own TLS server drops a refused connection silently; ours sends the alert."""
    async with dot_server(pki, upstream) as (_, port):
        reader, writer = await asyncio.open_connection(LOOPBACK, port, ssl=pki.client_context(None),
                                                       server_hostname=SERVER_NAME)
        writer.write(frame(dns.message.make_query(NAME, "A").to_wire()))
        with pytest.raises(ssl.SSLError) as info:
            await asyncio.wait_for(reader.read(2), 10)
        assert info.value.reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED"
        writer.close()


async def test_connections_that_never_handshake_are_closed(pki: Pki, upstream: FakeUpstream) -> None:
    port = free_port()
    async with in_process(dot_corefile(pki, port, upstream), options=ListenerOptions(tcp_idle_timeout=0.3)):
        reader, writer = await asyncio.open_connection(LOOPBACK, port)  # TCP, and then silence
        assert await asyncio.wait_for(reader.read(1), 10) == b""  # closed by the server
        writer.close()


async def test_idle_tls_connections_are_closed(pki: Pki, upstream: FakeUpstream) -> None:
    port = free_port()
    async with in_process(dot_corefile(pki, port, upstream), options=ListenerOptions(tcp_idle_timeout=0.3)) as server:
        reader, writer = await asyncio.open_connection(LOOPBACK, port, ssl=pki.client_context(),
                                                       server_hostname=SERVER_NAME)
        assert await asyncio.wait_for(reader.read(10), 10) == b""
        assert tls_listener(server).stats.tcp_idle_closed == 1
        writer.close()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_sessions_are_not_resumed(pki: Pki, upstream: FakeUpstream, version: ssl.TLSVersion) -> None:
    """A resumed session would skip the client certificate check (a CA removed meanwhile)."""
    async with dot_server(pki, upstream) as (_, port):
        ctx = pki.client_context(max_version=version)

        def connect_twice() -> bool:
            with socket.create_connection((LOOPBACK, port), timeout=10) as raw, \
                    ctx.wrap_socket(raw, server_hostname=SERVER_NAME) as tls:
                tls.settimeout(0.3)
                try:
                    tls.recv(1)  # TLS 1.3 would deliver its session tickets here
                except (TimeoutError, ssl.SSLError):
                    pass
                session = tls.session
            with socket.create_connection((LOOPBACK, port), timeout=10) as raw, \
                    ctx.wrap_socket(raw, server_hostname=SERVER_NAME, session=session) as tls:
                return tls.session_reused

        assert not await asyncio.to_thread(connect_twice)

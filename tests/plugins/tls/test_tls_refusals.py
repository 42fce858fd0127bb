"""forward tls:// against the tls plugin's DoT server: every refusal is refused and reported with
its reason (forward's own line, the errors plugin, the health check, the server's side).

The exchanger on its own (reconnect backoff, the TLS 1.3 late alert) is tested in
tests/upstream/test_transport.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import dns.rcode
import pytest

from testkit.dot import LOOPBACK, NAME, SERVER_NAME, Pki, dot_server, forwarder_corefile, messages
from testkit.fakeupstream import FakeUpstream
from testkit.servers import aquery, free_port, in_process
from testkit.waiting import until


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
        client_cert=None,
        reason="the server requires a client certificate and we sent none (TLS alert certificate_required)",
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
            await until(lambda: any("is down" in m for m in messages(caplog, "interkube.plugin.forward")),
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

"""DNS over TLS for tests: a CA, an untrusted CA, and every certificate the refusal cases need,
written with interkube's own certificate helper; DoT servers and clients on loopback.

Used by the tls plugin's tests (tests/plugins/tls) and the upstream transport's
(tests/upstream); the ``pki`` fixture (tests/conftest.py) writes these certificates to files.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.message
import pytest

from interkube.tlsutil import certs
from testkit.fakeupstream import FakeUpstream
from testkit.servers import LOOPBACK, free_port, in_process

SERVER_NAME = "dns.remote"
ZONE = "remote.svc.cluster.local"
NAME = f"db.{ZONE}"
ADDRESS = "10.1.17.231"


def _pki() -> dict[str, certs.Issued]:
    now = datetime.datetime.now(datetime.UTC)
    # An expired certificate's validity: a month ago until yesterday.
    began, ended = now - datetime.timedelta(days=30), now - datetime.timedelta(days=1)
    ca = certs.create_ca("test CA")
    other = certs.create_ca("untrusted CA")

    def server(signer: certs.Issued, *, expired: bool = False) -> certs.Issued:
        return certs.issue(signer, SERVER_NAME, dns_names=[SERVER_NAME, f"*.{ZONE}"], ip_addresses=[LOOPBACK],
                           not_before=began if expired else None, not_after=ended if expired else None)

    return {
        "ca": ca,
        "other-ca": other,
        "server": server(ca),
        "server2": server(ca),          # the rotation's successor
        "server-expired": server(ca, expired=True),
        "server-other": server(other),
        "client": certs.issue(ca, "dns-client.local", dns_names=["dns-client.local"], server=False, client=True),
        "client-other": certs.issue(other, "dns-client.local", server=False, client=True),
        "client-expired": certs.issue(ca, "dns-client.local", server=False, client=True,
                                      not_before=began, not_after=ended),
    }


_PKI: dict[str, certs.Issued] | None = None


def issued() -> dict[str, certs.Issued]:
    """The certificates, generated once per test session."""
    global _PKI
    if _PKI is None:
        _PKI = _pki()
    return _PKI


@dataclass
class Pki:
    """PEM files under ``dir``: ``NAME.crt`` and ``NAME.key`` for each entry of :func:`_pki`."""

    dir: Path
    issued: dict[str, certs.Issued]

    def crt(self, name: str) -> Path:
        return self.dir / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    def serial(self, name: str) -> int:
        return self.issued[name].cert.serial_number

    def client_context(self, cert: str | None = "client", *, ca: str = "ca", server_name: bool = True,
                       max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.crt(ca)))
        ctx.check_hostname = server_name
        if max_version is not None:
            ctx.maximum_version = max_version
        if cert is not None:
            ctx.load_cert_chain(self.crt(cert), self.key(cert))
        return ctx


def dot_corefile(pki: Pki, port: int, upstream: FakeUpstream, *, cert: str = "server",
                 client_auth: str | None = "require_and_verify", ca: str | None = "ca") -> str:
    """The remote cluster's DoT block, as in docs/tls.md, forwarding to its cluster DNS."""
    tls = f"tls {pki.crt(cert)} {pki.key(cert)}" + (f" {pki.crt(ca)}" if ca else "")
    if client_auth:
        tls += f" {{\n        client_auth {client_auth}\n    }}"
    return (f"tls://{ZONE}:{port} {{\n    bind {LOOPBACK}\n    {tls}\n    errors\n"
            f"    forward . {upstream.address}\n}}\n")


def forwarder_corefile(port: int, dot_port: int, tls: str, *, verify_name: str = SERVER_NAME,
                       options: str = "") -> str:
    """The local cluster's block: the remote zone forwarded over TLS (``tls`` is forward's option)."""
    return (f"{ZONE}:{port} {{\n bind {LOOPBACK}\n errors\n"
            f" forward . tls://{LOOPBACK}:{dot_port}%{verify_name} {{\n  {tls}\n{options} }}\n}}\n")


@contextlib.asynccontextmanager
async def dot_server(pki: Pki, upstream: FakeUpstream, **kwargs: Any) -> AsyncIterator[tuple[Any, int]]:
    """A DoT server in this event loop; yields (server, port)."""
    port = free_port()
    async with in_process(dot_corefile(pki, port, upstream, **kwargs)) as server:
        yield server, port


async def dot_query(port: int, ctx: ssl.SSLContext, name: str = NAME, timeout: float = 5.0) -> dns.message.Message:
    q = dns.message.make_query(name, "A")
    return await dns.asyncquery.tls(q, LOOPBACK, port=port, ssl_context=ctx, server_hostname=SERVER_NAME,
                                    timeout=timeout)


async def peer_serial(port: int, ctx: ssl.SSLContext) -> int:
    """The serial number of the certificate a new connection to ``port`` is shown."""
    from cryptography import x509

    _, writer = await asyncio.open_connection(LOOPBACK, port, ssl=ctx, server_hostname=SERVER_NAME)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der).serial_number
    finally:
        writer.close()


def messages(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger]

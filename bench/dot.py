"""DNS over TLS for the harness (S6): the run's certificates, and the DoT client that checks
answers and probes readiness.

The certificates are made afresh for every run (a CA and one server certificate for
``SERVER_NAME`` and 127.0.0.1, EC P-256, by interkube's own certificate helper) into the
scenario's work directory; every server of the scenario serves the same certificate and key, and
the client trusts only that CA and checks the name, as a DoT client with a pinned CA does.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query

LOOPBACK = "127.0.0.1"
#: The name in the server certificate, and what the client asks to see (SNI and the check).
SERVER_NAME = "dns.bench"


@dataclass(frozen=True)
class Pki:
    """The run's PEM files."""

    ca: Path
    cert: Path
    key: Path
    server_name: str = SERVER_NAME

    def client_context(self) -> ssl.SSLContext:
        """A client that trusts only the run's CA and checks the server's name."""
        return ssl.create_default_context(cafile=str(self.ca))


def make_pki(directory: Path) -> Pki:
    """A new CA and a server certificate signed by it, written under ``directory``."""
    from interkube.tlsutil import certs  # the harness imports interkube only where it needs it

    directory.mkdir(parents=True, exist_ok=True)
    ca = certs.create_ca("interkube bench CA")
    ca.save(directory / "ca.crt", directory / "ca.key")
    pki = Pki(directory / "ca.crt", directory / "server.crt", directory / "server.key")
    certs.issue(ca, SERVER_NAME, dns_names=[SERVER_NAME], ip_addresses=[LOOPBACK]).save(pki.cert, pki.key)
    return pki


def query(pki: Pki, name: str, port: int, timeout: float = 1.0) -> dns.message.Message:
    """One A query over a new DoT connection to 127.0.0.1:``port``."""
    q = dns.message.make_query(name, "A")
    return dns.query.tls(q, LOOPBACK, port=port, timeout=timeout, ssl_context=pki.client_context(),
                         server_hostname=pki.server_name)


def negotiated(pki: Pki, port: int, timeout: float = 2.0) -> str:
    """The TLS version and cipher suite a handshake with the server settles on (this client is
    Python's ssl, i.e. OpenSSL with its default offer, as dnsperf's is), e.g.
    ``TLSv1.3 TLS_AES_256_GCM_SHA384``."""
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as raw, \
            pki.client_context().wrap_socket(raw, server_hostname=pki.server_name) as tls:
        cipher = tls.cipher()
        return f"{tls.version()} {cipher[0] if cipher else '?'}"

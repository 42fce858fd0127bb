"""TLS client contexts for upstreams (forward `tls`, merge fan-out)."""

from __future__ import annotations

import ssl


def client_context(cert: str | None = None, key: str | None = None, ca: str | None = None) -> ssl.SSLContext:
    """A verifying client context, TLS 1.2 or newer, as CoreDNS's `tls [CERT KEY] [CA]`.

    Without CA the system's trust store verifies the server; with CERT and KEY the client
    presents a certificate (mutual TLS).
    """
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert or key:
        if not (cert and key):
            raise ValueError("a client certificate needs both CERT and KEY")
        ctx.load_cert_chain(cert, key)
    return ctx

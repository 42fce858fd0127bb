"""The connections of a DNS-over-TLS listener (and of a DNS-over-HTTPS one with a `tls` directive).

In a module of their own, loaded by the first TLS listener: the TLS layer imports ssl, which a
server without TLS never loads (issue 18, footprint; see interkube.server.openssl).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING

from interkube.server.listeners import Listener, TcpProtocol
from interkube.tlsutil.stream import TlsServerProtocol

if TYPE_CHECKING:
    from interkube.server import doh


class TlsConnection(TlsServerProtocol):
    """A DNS-over-TLS connection that holds its slot from accept: a client that never finishes
    its handshake is counted against the cap and its address's limit, and evicted like any other
    idle connection. Its handshake has the shorter of the handshake and idle timeouts. ``conn``
    is what speaks over the TLS: DNS over TCP by default, HTTP for DNS over HTTPS."""

    def __init__(self, listener: Listener, context: ssl.SSLContext,
                 conn: TcpProtocol | doh.DohConnection | None = None) -> None:
        self.conn = conn if conn is not None else TcpProtocol(listener)
        opts = listener.options
        super().__init__(context, self.conn, label=str(listener),
                         handshake_timeout=min(opts.tls_handshake_timeout, opts.tcp_idle_timeout))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self.conn.admit(transport):
            self.state = "closed"  # data that still comes in is discarded
            self.closing = True
            transport.close()
            return
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.conn.release()

    def handshake_expired(self) -> None:
        super().handshake_expired()
        self.conn.count_close("handshake")

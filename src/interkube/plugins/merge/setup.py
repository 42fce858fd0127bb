"""Wire `merge`: one upstream per cluster (UDP/TCP, or TLS when given as tls://)."""

from __future__ import annotations

import ssl

from interkube.plugins.forward.parse import TlsClientFiles
from interkube.plugins.merge.handler import MergeHandler, MergeStats
from interkube.plugins.merge.parse import MergeConfig
from interkube.server.plugin import SetupContext
from interkube.upstream.address import TRANSPORT_TLS, UpstreamAddr
from interkube.upstream.tls import client_context
from interkube.upstream.upstream import Upstream


def setup(cfg: MergeConfig, ctx: SetupContext) -> MergeHandler:
    tls_ctx: ssl.SSLContext | None = None
    if cfg.tls is not None or any(c.addr.transport == TRANSPORT_TLS for c in cfg.clusters):
        files = cfg.tls or TlsClientFiles()
        try:
            tls_ctx = client_context(files.cert, files.key, files.ca)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ctx.error(f"tls: {exc}") from None
    upstreams = []
    for cluster in cfg.clusters:
        addr = cluster.addr
        if addr.transport == TRANSPORT_TLS and addr.server_name is None and cfg.tls_servername:
            addr = UpstreamAddr(addr.transport, addr.host, addr.port, cfg.tls_servername)
        # No health checking: a cluster that does not answer in time is left out of each merge.
        upstreams.append(Upstream(addr, max_fails=0, ssl_context=tls_ctx))
    stats = ctx.services.share(("merge", cfg.zone), MergeStats)
    return MergeHandler(cfg, upstreams, stats, ctx.services.metrics)

"""Wire `merge`: one upstream per cluster (UDP/TCP, or TLS when given as tls://)."""

from __future__ import annotations

from interkube.pkg.args import TlsClientFiles
from interkube.plugin.setup import SetupContext
from interkube.plugins.merge.handler import MERGE_STATS, MergeHandler, MergeStats
from interkube.plugins.merge.parse import MergeConfig
from interkube.upstream.address import TRANSPORT_TLS, UpstreamAddr
from interkube.upstream.tls import ClientTls, describe_load_error, follow_rotation
from interkube.upstream.upstream import Upstream, UpstreamGroup


def setup(cfg: MergeConfig, ctx: SetupContext) -> MergeHandler:
    log = ctx.logger("merge")
    tls: ClientTls | None = None
    if cfg.tls is not None or any(c.addr.transport == TRANSPORT_TLS for c in cfg.clusters):
        files = cfg.tls or TlsClientFiles()
        try:
            tls = ClientTls(files.cert, files.key, files.ca, label=f"merge {cfg.zone}", log=log)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise ctx.error(f"tls: {describe_load_error(exc, files.cert, files.key, files.ca)}") from None
    tls_ctx = tls.context if tls is not None else None
    upstreams = []
    for cluster in cfg.clusters:
        addr = cluster.addr
        if addr.transport == TRANSPORT_TLS and addr.server_name is None and cfg.tls_servername:
            addr = UpstreamAddr(addr.transport, addr.host, addr.port, cfg.tls_servername)
        # No health checking: a cluster that does not answer in time is left out of each merge.
        up = Upstream(addr, max_fails=0, ssl_context=tls_ctx)
        up.stream.log = log  # TLS refusals are reported as merge's
        upstreams.append(up)
    stats = ctx.services.shared.get_or_create(MERGE_STATS, cfg.zone, MergeStats)
    watch = follow_rotation(tls, upstreams) if tls is not None else None
    handler = MergeHandler(cfg, UpstreamGroup(upstreams, watch), stats, ctx.services.metrics)
    ctx.on_startup(handler.start)
    ctx.on_shutdown(handler.stop)
    return handler

"""Wire `forward`: read resolv.conf files, build upstreams and their TLS contexts.

With TLS, the client certificate, key and CA files are watched (see ClientTls): a renewed
certificate is used by the next connection to each TLS upstream.
"""

from __future__ import annotations

import ssl

from interkube.pkg.args import TlsClientFiles
from interkube.plugin.setup import SetupContext
from interkube.plugins.forward.handler import FORWARD_STATS, UPSTREAM_STATS, ForwardHandler, ForwardStats
from interkube.plugins.forward.parse import MAX_UPSTREAMS, ForwardConfig
from interkube.upstream.address import TRANSPORT_TLS, UpstreamAddr, resolv_conf_nameservers
from interkube.upstream.tls import ClientTls, describe_load_error, follow_rotation
from interkube.upstream.upstream import Upstream, UpstreamGroup, UpstreamStats


def setup(cfg: ForwardConfig, ctx: SetupContext) -> ForwardHandler:
    addrs: list[UpstreamAddr] = []
    for spec in cfg.to:
        if spec.addr is not None:
            addrs.append(spec.addr)
            continue
        assert spec.path is not None
        try:
            found = resolv_conf_nameservers(spec.path)
        except FileNotFoundError:
            raise ctx.error(f"{spec.path!r} is neither an IP address nor an existing file") from None
        except OSError as exc:
            raise ctx.error(f"cannot read {spec.path}: {exc.strerror}") from None
        if not found:
            raise ctx.error(f"no nameserver lines in {spec.path}")
        addrs.extend(found)
    if len(addrs) > MAX_UPSTREAMS:
        raise ctx.error(f"more than {MAX_UPSTREAMS} upstreams")
    tls: ClientTls | None = None
    tls_ctx: ssl.SSLContext | None = None
    log = ctx.logger("forward")
    if any(a.transport == TRANSPORT_TLS for a in addrs) or cfg.tls is not None:
        files = cfg.tls or TlsClientFiles()
        try:
            tls = ClientTls(files.cert, files.key, files.ca, label=' '.join(cfg.from_zones), log=log)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise ctx.error(f"tls: {describe_load_error(exc, files.cert, files.key, files.ca)}") from None
        tls_ctx = tls.context
    upstreams = []
    for addr in addrs:
        if addr.transport == TRANSPORT_TLS and addr.server_name is None and cfg.tls_servername:
            addr = UpstreamAddr(addr.transport, addr.host, addr.port, cfg.tls_servername)
        stats = ctx.services.shared.get_or_create(UPSTREAM_STATS, str(addr), UpstreamStats)
        up = Upstream(addr, expire=cfg.expire, max_fails=cfg.max_fails, health=cfg.health,
                      ssl_context=tls_ctx, stats=stats)
        up.stream.log = log  # TLS refusals are reported as forward's
        upstreams.append(up)
    watch = follow_rotation(tls, upstreams) if tls is not None else None
    fstats = ctx.services.shared.get_or_create(FORWARD_STATS, (ctx.server_label, cfg.from_zones), ForwardStats)
    handler = ForwardHandler(cfg, UpstreamGroup(upstreams, watch), stats=fstats, metrics=ctx.services.metrics)
    ctx.on_startup(handler.start)
    ctx.on_shutdown(handler.stop)
    return handler

"""Wire `forward`: read resolv.conf files, build upstreams and their TLS contexts.

With TLS, the client certificate, key and CA files are watched (see ClientTls): a renewed
certificate is used by the next connection to each TLS or HTTPS upstream. DoT and DoH upstreams
read the same files into contexts of their own (see interkube.upstream.doh).

Each `forward` directive of a block is set up on its own (one handler each); the runtime chains
them in Corefile order (see the handler's module).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from interkube.pkg.args import TlsClientFiles
from interkube.plugin.setup import SetupContext
from interkube.plugins.forward.handler import FORWARD_STATS, UPSTREAM_STATS, ForwardHandler, ForwardStats
from interkube.plugins.forward.parse import MAX_UPSTREAMS, ForwardConfig
from interkube.upstream.address import TRANSPORT_HTTPS, TRANSPORT_TLS, UpstreamAddr, resolv_conf_nameservers
from interkube.upstream.upstream import Upstream, UpstreamGroup, UpstreamStats

if TYPE_CHECKING:  # with ssl, loaded for TLS and HTTPS upstreams only (issue 18, footprint)
    from interkube.upstream.tls import ClientTls


def _addresses(cfg: ForwardConfig, ctx: SetupContext) -> list[UpstreamAddr]:
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
            raise ctx.error(f"cannot read {spec.path}: {exc.strerror or exc}") from None
        if not found:
            raise ctx.error(f"no nameserver lines in {spec.path}")
        addrs.extend(found)
    # As CoreDNS: an upstream listed twice (or also in a resolv.conf) is one upstream.
    addrs = list(dict.fromkeys(addrs))
    if len(addrs) > MAX_UPSTREAMS:
        raise ctx.error(f"more than {MAX_UPSTREAMS} upstreams")
    if cfg.tls_servername:
        addrs = [UpstreamAddr(a.transport, a.host, a.port, cfg.tls_servername)
                 if a.transport in (TRANSPORT_TLS, TRANSPORT_HTTPS) and a.server_name is None else a
                 for a in addrs]
    return addrs


def _client_tls(cfg: ForwardConfig, ctx: SetupContext, label: str) -> ClientTls:
    from interkube.upstream.tls import ClientTls, describe_load_error

    files = cfg.tls or TlsClientFiles()
    try:
        return ClientTls(files.cert, files.key, files.ca, label=label, log=ctx.logger("forward"))
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise ctx.error(f"tls: {describe_load_error(exc, files.cert, files.key, files.ca)}") from None


def setup(cfg: ForwardConfig, ctx: SetupContext) -> ForwardHandler:
    addrs = _addresses(cfg, ctx)
    log = ctx.logger("forward")
    label = " ".join(cfg.from_zones)
    dot = _client_tls(cfg, ctx, label) if any(a.transport == TRANSPORT_TLS for a in addrs) or cfg.tls else None
    doh = _client_tls(cfg, ctx, f"{label} (DoH)") if any(a.transport == TRANSPORT_HTTPS for a in addrs) else None
    upstreams = []
    for addr in addrs:
        stats = ctx.services.shared.get_or_create(UPSTREAM_STATS, str(addr), UpstreamStats)
        tls = doh if addr.transport == TRANSPORT_HTTPS else dot
        up = Upstream(addr, expire=cfg.expire, max_fails=cfg.max_fails, health=cfg.health,
                      ssl_context=tls.context if tls is not None else None, stats=stats,
                      max_age=cfg.max_age, max_idle_conns=cfg.max_idle_conns,
                      source_address=cfg.source_address, doh_method=cfg.doh_method)
        up.stream.log = log  # TLS refusals are reported as forward's
        upstreams.append(up)
    pairs = [(tls, [u for u in upstreams if (u.is_https if tls is doh else u.is_tls)])
             for tls in (dot, doh) if tls is not None]
    watch = None
    if pairs:
        from interkube.upstream.tls import follow_rotations

        watch = follow_rotations(pairs)
    # Per block and FROM, and per directive: two forwards of a block with the same FROM (a
    # `next` chain) count their own rejects.
    index = ctx.directive.where if ctx.directive is not None else ""
    fstats = ctx.services.shared.get_or_create(FORWARD_STATS, (ctx.server_label, cfg.from_zones, index),
                                               ForwardStats)
    handler = ForwardHandler(cfg, UpstreamGroup(upstreams, watch), stats=fstats, metrics=ctx.services.metrics)
    ctx.on_startup(handler.start)
    ctx.on_shutdown(handler.stop)
    return handler

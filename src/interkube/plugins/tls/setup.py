"""Wire `tls`: load the certificate (a mistake is a config error at file:line) for the block's
tls:// keys, and hand back the handler that keeps re-reading the files."""

from __future__ import annotations

from interkube.plugins.tls.handler import TlsHandler
from interkube.plugins.tls.parse import TlsConfig
from interkube.server.corefile.keys import TRANSPORT_TLS
from interkube.server.plugin import SetupContext
from interkube.tlsutil.contexts import ServerFiles, ServerTls, TlsSetupError


def setup(cfg: TlsConfig, ctx: SetupContext) -> TlsHandler | None:
    if ctx.transport != TRANSPORT_TLS:
        return None  # the same block's dns:// keys: tls concerns its tls:// keys only
    zone = ctx.zones[0] if ctx.zones else "."
    label = f"tls://{zone.rstrip('.') or '.'}:{ctx.port}"
    try:
        server = ServerTls(ServerFiles(cfg.cert, cfg.key, cfg.ca), cfg.client_auth, cfg.keylog,
                           label=label, log=ctx.logger("tls"))
    except TlsSetupError as exc:
        raise ctx.error(str(exc)) from None
    ctx.block.tls = server
    return TlsHandler(server)

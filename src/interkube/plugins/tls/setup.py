"""Wire `tls`: load the certificate (a mistake is a config error at file:line) for the block's
tls:// keys, and keep re-reading the files while the configuration runs (see ServerTls.check).

A config-only plugin: it puts the TLS context into the block's settings and never sees a query.
"""

from __future__ import annotations

from interkube.corefile.keys import TRANSPORT_TLS
from interkube.plugin.setup import SetupContext
from interkube.plugins.tls.parse import TlsConfig
from interkube.tlsutil.contexts import ServerFiles, ServerTls, TlsSetupError
from interkube.tlsutil.watch import follower


def setup(cfg: TlsConfig, ctx: SetupContext) -> None:
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
    poller = follower(server.check, name=server.label)

    async def start() -> None:
        poller.start()

    ctx.on_startup(start)
    ctx.on_shutdown(poller.stop)
    return None

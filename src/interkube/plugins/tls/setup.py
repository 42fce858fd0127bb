"""Wire `tls`: load the certificate (a mistake is a config error at file:line) for the block's
tls:// and https:// keys, and keep re-reading the files while the configuration runs (see
ServerTls.check). https:// keys offer HTTP/2 and HTTP/1.1 by ALPN (as CoreDNS's DoH server), tls://
keys DNS over TLS's "dot".

A config-only plugin: it puts the TLS context into the block's settings and never sees a query.
"""

from __future__ import annotations

from interkube.corefile.keys import TRANSPORT_HTTPS, TRANSPORT_TLS
from interkube.plugin.setup import SetupContext
from interkube.plugins.tls.parse import TlsConfig
from interkube.tlsutil.contexts import ALPN, ServerFiles, ServerTls, TlsSetupError
from interkube.tlsutil.watch import follower

#: What an https:// listener offers by ALPN: HTTP/2 first (RFC 8484 section 5.2), HTTP/1.1 for
#: clients without it.
HTTPS_ALPN = ("h2", "http/1.1")


def setup(cfg: TlsConfig, ctx: SetupContext) -> None:
    if ctx.transport not in (TRANSPORT_TLS, TRANSPORT_HTTPS):
        return None  # the same block's dns:// keys: tls concerns its tls:// and https:// keys only
    zone = ctx.zones[0] if ctx.zones else "."
    label = f"{ctx.transport}://{zone.rstrip('.') or '.'}:{ctx.port}"
    alpn = HTTPS_ALPN if ctx.transport == TRANSPORT_HTTPS else ALPN
    try:
        server = ServerTls(ServerFiles(cfg.cert, cfg.key, cfg.ca), cfg.client_auth, cfg.keylog,
                           label=label, log=ctx.logger("tls"), alpn=alpn)
    except TlsSetupError as exc:
        raise ctx.error(str(exc)) from None
    ctx.block.tls = server
    poller = follower(server.check, name=server.label)

    async def start() -> None:
        poller.start()

    ctx.on_startup(start)
    ctx.on_shutdown(poller.stop)
    return None

"""The tls handler: keeps a tls:// block's certificate current; it never sees a query."""

from __future__ import annotations

from interkube.server.plugin import Handler
from interkube.tlsutil.contexts import ServerTls
from interkube.tlsutil.watch import Poller


class TlsHandler(Handler):
    """Polls the certificate files while the configuration runs (see ServerTls.check)."""

    plugin = "tls"

    def __init__(self, server: ServerTls) -> None:
        self.server = server
        self.poller = Poller(server.check, name=server.label)

    # The handler is in the chain only for its start/stop. Taking over the next handler's
    # methods when the chain is linked keeps it off the query path: no extra call per query.
    @property  # type: ignore[override]
    def next(self) -> Handler:
        return self._next

    @next.setter
    def next(self, handler: Handler) -> None:
        self._next = handler
        self.fast = handler.fast  # type: ignore[method-assign]
        self.serve = handler.serve  # type: ignore[method-assign]

    async def start(self) -> None:
        self.poller.start()

    async def stop(self) -> None:
        await self.poller.stop()

"""Wire `transfer`: one handler per server block, whatever the number of `transfer` directives.

As in CoreDNS, every `transfer` directive of a block is one stanza of the same plugin: the first
directive's setup makes the handler, the others add their stanza to it. The handler finds the
zones' sources (file, kubernetes) among the handlers after it when it starts, and sends the first
NOTIFY once the block answers.
"""

from __future__ import annotations

from interkube.pkg.shared import Kind
from interkube.plugin.setup import SetupContext
from interkube.plugins.transfer.handler import Stanza, TransferHandler
from interkube.plugins.transfer.parse import TransferConfig

#: The transfer handler of a server block (its chain).
BLOCK_TRANSFER = Kind("the transfer handler of a server block", TransferHandler)


def setup(cfg: TransferConfig, ctx: SetupContext) -> TransferHandler | None:
    handler = ctx.block.shared.get(BLOCK_TRANSFER)
    first = handler is None
    if handler is None:
        handler = TransferHandler()
        ctx.block.shared.put(BLOCK_TRANSFER, None, handler)
    # Every worker of a multi-worker server answers transfers; one of them tells the secondaries.
    worker = ctx.services.worker
    handler.add(Stanza(cfg, cfg.zones or ctx.zones, notify=worker is None or worker.index == 0))
    if not first:
        return None
    ctx.on_startup(handler.start)
    ctx.on_serving(handler.serving)
    ctx.on_shutdown(handler.stop)
    return handler

"""Wire `loop`: probe the block's first zone at the block's own address."""

from interkube.plugin.setup import SetupContext
from interkube.plugins.loop.handler import LoopHandler
from interkube.plugins.loop.parse import LoopConfig


def setup(cfg: LoopConfig, ctx: SetupContext) -> LoopHandler:
    host = ctx.block.bind[0] if ctx.block.bind else "127.0.0.1"
    if host in ("::", "0.0.0.0"):
        host = "127.0.0.1"
    handler = LoopHandler(ctx.zones[0], host, ctx.port, ctx.services)
    ctx.on_serving(handler.serving)
    ctx.on_shutdown(handler.stop)
    return handler

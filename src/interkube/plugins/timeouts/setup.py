"""Wire `timeouts`: a setting of the block's listeners, no handler."""

from interkube.plugin.setup import ConnectionTimeouts, SetupContext


def setup(cfg: ConnectionTimeouts, ctx: SetupContext) -> None:
    ctx.block.timeouts = cfg
    return None

"""Wire `log`: every `log` directive of a server block feeds one handler, as in CoreDNS."""

from __future__ import annotations

from interkube.pkg.shared import Kind
from interkube.plugin.setup import SetupContext
from interkube.plugins.log.handler import LogHandler
from interkube.plugins.log.parse import LogConfig

#: The block's log handler: CoreDNS gathers the rules of all of a block's `log` directives into
#: one plugin, where the first rule whose name matches decides; separate handlers would log a
#: query once per matching directive.
BLOCK_LOGGER = Kind("log handler of a server block", LogHandler)


def setup(cfg: LogConfig, ctx: SetupContext) -> LogHandler | None:
    first = ctx.block.shared.get(BLOCK_LOGGER)
    if first is not None:
        first.add(cfg)
        return None
    handler = LogHandler(cfg)
    ctx.block.shared.put(BLOCK_LOGGER, None, handler)
    return handler

"""Wire `rewrite`: the rules of every `rewrite` directive of a server block in one handler.

CoreDNS gives a block one rewrite plugin holding all its `rewrite` lines as one list of rules in
Corefile order: a `stop` rule ends that list, not only its own line. The first directive's setup
makes the handler; each later one adds its rule to it and adds no handler of its own.
"""

from __future__ import annotations

from interkube.pkg.shared import Kind
from interkube.plugin.setup import SetupContext
from interkube.plugins.rewrite.handler import RewriteHandler
from interkube.plugins.rewrite.parse import RewriteConfig

#: The block's handler, found by its later `rewrite` directives.
BLOCK_HANDLER = Kind("rewrite handler", RewriteHandler)


def setup(cfg: RewriteConfig, ctx: SetupContext) -> RewriteHandler | None:
    handler = ctx.block.shared.get(BLOCK_HANDLER)
    if handler is not None:
        handler.add(cfg.rule)
        return None
    handler = RewriteHandler([cfg.rule])
    ctx.block.shared.put(BLOCK_HANDLER, None, handler)
    return handler

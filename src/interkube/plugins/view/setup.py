"""Wire `view`: the block's condition, read by the runtime when it routes the zone's queries,
and the `view/name` metadata label."""

from __future__ import annotations

from interkube.plugin import metadata
from interkube.plugin.metadata import PROVIDERS
from interkube.plugin.request import Request
from interkube.plugin.setup import SetupContext, View
from interkube.plugins.view.filter import ViewCondition
from interkube.plugins.view.parse import ViewConfig


def setup(cfg: ViewConfig, ctx: SetupContext) -> None:
    # The providers list exists when a metadata plugin was set up before (it is first in the
    # plugin order, view last); without one, metadata() reads nothing, as in CoreDNS.
    collect = ctx.block.shared.get(PROVIDERS)
    name = cfg.name

    def provide(req: Request) -> None:
        metadata.set_value(req, "view/name", name)

    metadata.providers(ctx.block.shared).append(provide)
    ctx.block.view = View(name, ViewCondition(cfg.programs, collect).accepts)

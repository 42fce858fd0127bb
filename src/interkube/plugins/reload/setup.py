"""Wire `reload`."""

from interkube.plugins.reload.handler import ReloadHandler
from interkube.plugins.reload.parse import ReloadConfig
from interkube.server.plugin import SetupContext


def setup(cfg: ReloadConfig, ctx: SetupContext) -> ReloadHandler:
    return ReloadHandler(cfg, ctx.services)

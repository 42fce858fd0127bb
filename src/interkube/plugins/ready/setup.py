"""Wire `ready`."""

from interkube.plugins.ready.handler import ReadyHandler
from interkube.plugins.ready.parse import ReadyConfig
from interkube.server.http import endpoint
from interkube.server.plugin import SetupContext


def setup(cfg: ReadyConfig, ctx: SetupContext) -> ReadyHandler:
    return ReadyHandler(cfg, endpoint(ctx.services, cfg.address, 8181, ctx), ctx.services)

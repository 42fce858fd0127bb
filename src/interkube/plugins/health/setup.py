"""Wire `health`."""

from interkube.plugins.health.handler import HealthHandler
from interkube.plugins.health.parse import HealthConfig
from interkube.server.http import endpoint
from interkube.server.plugin import SetupContext


def setup(cfg: HealthConfig, ctx: SetupContext) -> HealthHandler:
    return HealthHandler(cfg, endpoint(ctx.services, cfg.address, 8080, ctx))

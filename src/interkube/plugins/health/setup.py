"""Wire `health`: a config-only plugin serving /health, with lameduck on shutdown."""

from interkube.plugin.http import endpoint
from interkube.plugin.setup import SetupContext
from interkube.plugins.health.endpoint import Health
from interkube.plugins.health.parse import HealthConfig


def setup(cfg: HealthConfig, ctx: SetupContext) -> None:
    health = Health(cfg, endpoint(ctx.services, cfg.address, 8080, ctx), ctx.services)
    ctx.on_startup(health.start)
    ctx.on_shutdown(health.stop)
    ctx.on_final_shutdown(health.lameduck)

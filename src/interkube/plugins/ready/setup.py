"""Wire `ready`: a config-only plugin serving /ready from every plugin's readiness checks."""

from interkube.plugin.http import endpoint
from interkube.plugin.setup import SetupContext
from interkube.plugins.ready.endpoint import Ready
from interkube.plugins.ready.parse import ReadyConfig


def setup(cfg: ReadyConfig, ctx: SetupContext) -> None:
    ready = Ready(endpoint(ctx.services, cfg.address, 8181, ctx), ctx.services)
    ctx.on_startup(ready.start)
    ctx.on_shutdown(ready.stop)

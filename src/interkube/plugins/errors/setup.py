"""Wire `errors`."""

from interkube.plugins.errors.handler import ErrorsHandler
from interkube.plugins.errors.parse import ErrorsConfig
from interkube.plugin.setup import SetupContext


def setup(cfg: ErrorsConfig, ctx: SetupContext) -> ErrorsHandler:
    handler = ErrorsHandler(cfg)
    ctx.on_startup(handler.start)
    ctx.on_shutdown(handler.stop)
    return handler

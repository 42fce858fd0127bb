"""Wire `errors`."""

from interkube.plugin.setup import SetupContext
from interkube.plugins.errors.handler import ErrorsHandler
from interkube.plugins.errors.parse import ErrorsConfig


def setup(cfg: ErrorsConfig, ctx: SetupContext) -> ErrorsHandler:
    handler = ErrorsHandler(cfg)
    # On shutdown (a reload, or the end) the periods under way report their counts, as
    # CoreDNS's OnShutdown does.
    ctx.on_shutdown(handler.stop)
    return handler

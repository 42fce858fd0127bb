"""Wire `errors`."""

from interkube.plugins.errors.handler import ErrorsHandler
from interkube.plugins.errors.parse import ErrorsConfig
from interkube.server.plugin import SetupContext


def setup(cfg: ErrorsConfig, ctx: SetupContext) -> ErrorsHandler:
    return ErrorsHandler(cfg)

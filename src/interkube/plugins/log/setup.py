"""Wire `log`."""

from interkube.plugins.log.handler import LogHandler
from interkube.plugins.log.parse import LogConfig
from interkube.plugin.setup import SetupContext


def setup(cfg: LogConfig, ctx: SetupContext) -> LogHandler:
    return LogHandler(cfg)

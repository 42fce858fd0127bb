"""Wire `header`."""

from interkube.plugin.setup import SetupContext
from interkube.plugins.header.handler import HeaderHandler
from interkube.plugins.header.parse import HeaderConfig


def setup(cfg: HeaderConfig, ctx: SetupContext) -> HeaderHandler:
    return HeaderHandler(cfg)

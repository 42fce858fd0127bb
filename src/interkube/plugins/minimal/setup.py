"""Wire `minimal`."""

from interkube.plugin.setup import SetupContext
from interkube.plugins.minimal.handler import MinimalHandler


def setup(cfg: None, ctx: SetupContext) -> MinimalHandler:
    return MinimalHandler()

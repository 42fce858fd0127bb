"""Wire `bufsize`."""

from interkube.plugin.setup import SetupContext
from interkube.plugins.bufsize.handler import BufsizeHandler
from interkube.plugins.bufsize.parse import BufsizeConfig


def setup(cfg: BufsizeConfig, ctx: SetupContext) -> BufsizeHandler:
    return BufsizeHandler(cfg.size)

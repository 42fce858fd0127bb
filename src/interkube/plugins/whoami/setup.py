"""Wire `whoami`."""

from interkube.plugin.setup import SetupContext
from interkube.plugins.whoami.handler import WhoamiHandler


def setup(cfg: None, ctx: SetupContext) -> WhoamiHandler:
    return WhoamiHandler()

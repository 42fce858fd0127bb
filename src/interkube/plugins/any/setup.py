"""Wire `any`."""

from interkube.plugin.setup import SetupContext
from interkube.plugins.any.handler import AnyHandler


def setup(cfg: None, ctx: SetupContext) -> AnyHandler:
    return AnyHandler()

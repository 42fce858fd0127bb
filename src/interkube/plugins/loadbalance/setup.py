"""Wire `loadbalance`."""

from interkube.plugin.setup import SetupContext
from interkube.plugins.loadbalance.handler import LoadbalanceHandler
from interkube.plugins.loadbalance.parse import LoadbalanceConfig


def setup(cfg: LoadbalanceConfig, ctx: SetupContext) -> LoadbalanceHandler:
    return LoadbalanceHandler()

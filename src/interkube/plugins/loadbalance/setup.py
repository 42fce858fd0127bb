"""Wire `loadbalance`."""

from interkube.plugins.loadbalance.handler import LoadbalanceHandler
from interkube.plugins.loadbalance.parse import LoadbalanceConfig
from interkube.plugin.setup import SetupContext


def setup(cfg: LoadbalanceConfig, ctx: SetupContext) -> LoadbalanceHandler:
    return LoadbalanceHandler()

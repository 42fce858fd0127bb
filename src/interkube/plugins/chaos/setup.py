"""Wire `chaos`: the host name is read once, when the configuration is loaded."""

import socket

from interkube.plugin.setup import SetupContext
from interkube.plugins.chaos.handler import ChaosHandler
from interkube.plugins.chaos.parse import ChaosConfig, trim


def setup(cfg: ChaosConfig, ctx: SetupContext) -> ChaosHandler:
    try:
        hostname = socket.gethostname() or "localhost"
    except OSError:
        hostname = "localhost"
    return ChaosHandler(cfg, trim(hostname))

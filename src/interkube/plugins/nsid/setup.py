"""Wire `nsid`: the default identifier is the host's name."""

import socket

from interkube.plugin.setup import SetupContext
from interkube.plugins.nsid.handler import NsidHandler
from interkube.plugins.nsid.parse import NsidConfig


def setup(cfg: NsidConfig, ctx: SetupContext) -> NsidHandler:
    data = cfg.data
    if data is None:
        try:
            data = socket.gethostname() or "localhost"
        except OSError:
            data = "localhost"
    return NsidHandler(data.encode())

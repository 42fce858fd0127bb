"""Wire `acl`."""

from interkube.plugins.acl.handler import AclHandler, AclStats
from interkube.plugins.acl.parse import AclConfig
from interkube.server.plugin import SetupContext


def setup(cfg: AclConfig, ctx: SetupContext) -> AclHandler:
    stats = ctx.services.share(("acl", ctx.server_label, cfg), AclStats)
    return AclHandler(cfg, ctx.zones, ctx.server_label, ctx.services.metrics, stats)

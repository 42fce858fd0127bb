"""Wire `acl`."""

from interkube.plugin.setup import SetupContext
from interkube.plugins.acl.handler import ACL_STATS, AclHandler, AclStats
from interkube.plugins.acl.parse import AclConfig


def setup(cfg: AclConfig, ctx: SetupContext) -> AclHandler:
    stats = ctx.services.shared.get_or_create(ACL_STATS, (ctx.server_label, cfg), AclStats)
    handler = AclHandler(cfg, ctx.zones, ctx.server_label, ctx.services.metrics, stats)
    ctx.on_startup(handler.start)
    ctx.on_shutdown(handler.stop)
    return handler

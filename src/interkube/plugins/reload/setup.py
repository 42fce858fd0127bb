"""Wire `reload`: a config-only plugin whose timer runs while its configuration does."""

from interkube.plugin.setup import SetupContext
from interkube.plugins.reload.parse import ReloadConfig
from interkube.plugins.reload.timer import ReloadTimer


def setup(cfg: ReloadConfig, ctx: SetupContext) -> None:
    timer = ReloadTimer(cfg, ctx.services)
    ctx.on_startup(timer.start)
    ctx.on_shutdown(timer.stop)

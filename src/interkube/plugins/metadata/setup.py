"""Wire `metadata`: the block's providers list, which the plugins set up after this one fill
(metadata comes first in the plugin order, so it is set up first)."""

from interkube.plugin.metadata import providers
from interkube.plugin.setup import SetupContext
from interkube.plugins.metadata.handler import MetadataHandler
from interkube.plugins.metadata.parse import MetadataConfig


def setup(cfg: MetadataConfig, ctx: SetupContext) -> MetadataHandler:
    return MetadataHandler(cfg.zones or ctx.zones, providers(ctx.block.shared))

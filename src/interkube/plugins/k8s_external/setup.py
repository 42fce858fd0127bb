"""Wire `k8s_external`: its zones, and the block's kubernetes stanzas it answers from."""

from __future__ import annotations

from interkube.plugin.kubestanza import BLOCK_STANZAS, StanzaGroup
from interkube.plugin.setup import SetupContext
from interkube.plugins.k8s_external.handler import ExternalHandler
from interkube.plugins.k8s_external.parse import ExternalConfig


def setup(cfg: ExternalConfig, ctx: SetupContext) -> ExternalHandler:
    zones = cfg.zones or ctx.zones
    # k8s_external runs before kubernetes (CoreDNS's order), so the stanzas are set up after
    # this: the handler holds the block's group, which they join, and checks it once they have.
    stanzas = ctx.block.shared.get_or_create(BLOCK_STANZAS, None, StanzaGroup)
    handler = ExternalHandler(cfg, zones, stanzas)

    def has_a_stanza() -> None:
        if not stanzas.handlers:
            raise ctx.error("needs the cluster's `kubernetes` (or `kubernetai`) stanza in the same server "
                            "block (CoreDNS: kubernetes plugin not loaded)")

    ctx.on_configured(has_a_stanza)
    ctx.on_shutdown(handler.stop)
    return handler

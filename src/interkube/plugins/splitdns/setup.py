"""Wire `splitdns`: its zones, and the kubernetes stanza (`from CLUSTER`) whose data answers."""

from __future__ import annotations

from interkube.dns.names import is_subdomain
from interkube.plugin.kubestanza import BLOCK_STANZAS, StanzaGroup
from interkube.plugin.setup import SetupContext
from interkube.plugins.splitdns.handler import SplitDnsHandler
from interkube.plugins.splitdns.parse import HostRule, PodRule, SplitDnsConfig


def setup(cfg: SplitDnsConfig, ctx: SetupContext) -> SplitDnsHandler:
    zones = cfg.zones or ctx.zones
    for rule in cfg.rules:
        if isinstance(rule, HostRule) and not any(is_subdomain(rule.name, z) for z in zones):
            raise ctx.error(f"host {rule.name} (at {rule.where}) is outside the plugin's zones ({', '.join(zones)})")
    # splitdns runs after kubernetes and kubernetai (the registry's order), so the block's
    # stanzas are set up already and `from` is checked against the clusters they serve.
    stanzas = ctx.block.shared.get_or_create(BLOCK_STANZAS, None, StanzaGroup)
    served = [h.cluster.name for h in stanzas.handlers]
    if cfg.cluster is not None and cfg.cluster not in served:
        message = (f"splitdns: from {cfg.cluster!r}: no kubernetes stanza of this server block serves that "
                   "cluster " + (f"(they serve {', '.join(served)}; see their `cluster NAME`)" if served
                                 else "(the block has none)"))
        raise ctx.error(message) if cfg.cluster_token is None else cfg.cluster_token.error(message)
    if not served and any(isinstance(rule, PodRule) for rule in cfg.rules):
        raise ctx.error("`pod` rules need the cluster's `kubernetes` stanza in the same server block")
    handler = SplitDnsHandler(cfg, zones, stanzas)
    ctx.on_shutdown(handler.stop)
    return handler

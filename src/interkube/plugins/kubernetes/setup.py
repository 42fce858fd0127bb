"""Wire a `kubernetes` stanza (the stanza's setup and handler are shared with *kubernetai*:
:mod:`interkube.plugin.kubestanza`)."""

from __future__ import annotations

from interkube.kube.stanza import KubernetesConfig, cluster_name, local_addresses
from interkube.plugin.kubestanza import KubernetesHandler, setup_stanza
from interkube.plugin.setup import SetupContext


def setup(cfg: KubernetesConfig, ctx: SetupContext) -> KubernetesHandler:
    return setup_stanza(cfg, ctx, KubernetesHandler)


__all__ = ["cluster_name", "local_addresses", "setup"]

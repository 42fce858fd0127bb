"""Parse a ``kubernetes [ZONES...] { ... }`` stanza: CoreDNS's options plus ``snapshot`` and
``cluster`` (the parser is shared with *kubernetai*: :mod:`interkube.kube.stanza`)."""

from __future__ import annotations

from interkube.corefile.parser import Directive
from interkube.kube.stanza import NOT_SUPPORTED, KubernetesConfig, parse_stanza


def parse(d: Directive) -> KubernetesConfig:
    return parse_stanza(d, "kubernetes")


__all__ = ["NOT_SUPPORTED", "KubernetesConfig", "parse"]

"""Parse a ``kubernetai [ZONES...] { ... }`` stanza: the kubernetes plugin's syntax, option for
option (:mod:`interkube.kube.stanza`), with ``kubernetai`` in its messages."""

from __future__ import annotations

from interkube.corefile.parser import Directive
from interkube.kube.stanza import KubernetesConfig, parse_stanza


def parse(d: Directive) -> KubernetesConfig:
    return parse_stanza(d, "kubernetai")

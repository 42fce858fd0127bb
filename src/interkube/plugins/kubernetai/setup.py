"""Wire a `kubernetai` stanza: a kubernetes stanza (:mod:`interkube.plugin.kubestanza`) under the
name kubernetai.

Each stanza is a handler of its own in the chain, in the Corefile's order, so a question meets
the stanzas one after the other as kubernetai's loop tries them: the first whose zones hold the
name answers, and its ``fallthrough`` hands a name it does not have to the next stanza that
serves the name, then to the next plugin.
"""

from __future__ import annotations

from interkube.kube.stanza import KubernetesConfig
from interkube.plugin.kubestanza import KubernetesHandler, setup_stanza
from interkube.plugin.setup import SetupContext


class KubernetaiHandler(KubernetesHandler):
    """A kubernetes stanza that logs, counts and reports readiness as kubernetai."""

    plugin = "kubernetai"
    # (Its stanzas' answers are not sent from the UDP answer memo: no test covers them there.)
    memo_safe = False


def setup(cfg: KubernetesConfig, ctx: SetupContext) -> KubernetesHandler:
    # kubernetai's own examples serve one zone from two stanzas (two connections to one API, a
    # local and a remote cluster) without naming them: a default name already served from
    # another source becomes NAME-2 rather than an error.
    return setup_stanza(cfg, ctx, KubernetaiHandler, unique_names=True)

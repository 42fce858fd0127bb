"""kubernetai: several clusters in one server block, one kubernetes stanza each (CoreDNS's external
kubernetai plugin), on the kubernetes plugin's stanza."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.kubernetai.parse import parse

# Several stanzas per block, each a cluster, tried in the Corefile's order.
PLUGIN = Plugin(name="kubernetai", parse=parse, setup=deferred("interkube.plugins.kubernetai.setup"), multiple=True)

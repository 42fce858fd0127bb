"""k8s_external: Services' load balancer and external addresses under an external zone, as CoreDNS's
k8s_external plugin (what a client outside the cluster uses)."""

from interkube.plugin.setup import Plugin
from interkube.plugins.k8s_external.parse import parse
from interkube.plugins.k8s_external.setup import setup

PLUGIN = Plugin(name="k8s_external", parse=parse, setup=setup)

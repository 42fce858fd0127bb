"""k8s_external: Services' load balancer and external addresses under an external zone, as CoreDNS's
k8s_external plugin (what a client outside the cluster uses)."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.k8s_external.parse import parse

PLUGIN = Plugin(name="k8s_external", parse=parse, setup=deferred("interkube.plugins.k8s_external.setup"))

"""kubernetes: Services, endpoints and pods of one or many clusters, as CoreDNS's kubernetes plugin."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.kubernetes.parse import parse

# One stanza per cluster: several may share a server block (`kubernetes cluster.east {...}`,
# `kubernetes cluster.west {...}`), each answering for its own zones.
PLUGIN = Plugin(name="kubernetes", parse=parse, setup=deferred("interkube.plugins.kubernetes.setup"), multiple=True)

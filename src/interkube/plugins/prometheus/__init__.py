"""prometheus: metrics for every answer, and the /metrics endpoint."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.prometheus.parse import parse

PLUGIN = Plugin(name="prometheus", parse=parse, setup=deferred("interkube.plugins.prometheus.setup"))

"""prometheus: metrics for every answer, and the /metrics endpoint."""

from interkube.plugins.prometheus.parse import parse
from interkube.plugins.prometheus.setup import setup
from interkube.plugin.setup import Plugin

PLUGIN = Plugin(name="prometheus", parse=parse, setup=setup)

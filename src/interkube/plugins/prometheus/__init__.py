"""prometheus: metrics for every answer, and the /metrics endpoint."""

from interkube.plugin.setup import Plugin
from interkube.plugins.prometheus.parse import parse
from interkube.plugins.prometheus.setup import setup

PLUGIN = Plugin(name="prometheus", parse=parse, setup=setup)

"""metadata: collect the labelled values plugins offer about each query."""

from interkube.plugin.setup import Plugin
from interkube.plugins.metadata.parse import parse
from interkube.plugins.metadata.setup import setup

PLUGIN = Plugin(name="metadata", parse=parse, setup=setup)

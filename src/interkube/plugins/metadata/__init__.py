"""metadata: collect the labelled values plugins offer about each query."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.metadata.parse import parse

PLUGIN = Plugin(name="metadata", parse=parse, setup=deferred("interkube.plugins.metadata.setup"))

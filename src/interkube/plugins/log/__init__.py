"""log: one line per query."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.log.parse import parse

PLUGIN = Plugin(name="log", parse=parse, setup=deferred("interkube.plugins.log.setup"), multiple=True)

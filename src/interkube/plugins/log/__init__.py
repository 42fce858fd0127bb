"""log: one line per query."""

from interkube.plugins.log.parse import parse
from interkube.plugins.log.setup import setup
from interkube.plugin.setup import Plugin

PLUGIN = Plugin(name="log", parse=parse, setup=setup, multiple=True)

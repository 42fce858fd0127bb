"""log: one line per query."""

from interkube.plugin.setup import Plugin
from interkube.plugins.log.parse import parse
from interkube.plugins.log.setup import setup

PLUGIN = Plugin(name="log", parse=parse, setup=setup, multiple=True)

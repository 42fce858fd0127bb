"""forward: send queries to upstream DNS servers."""

from interkube.plugin.setup import Plugin
from interkube.plugins.forward.parse import parse
from interkube.plugins.forward.setup import setup

PLUGIN = Plugin(name="forward", parse=parse, setup=setup, multiple=True)

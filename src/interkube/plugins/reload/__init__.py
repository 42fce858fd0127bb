"""reload: re-read the Corefile when it changes."""

from interkube.plugins.reload.parse import parse
from interkube.plugins.reload.setup import setup
from interkube.plugin.setup import Plugin

PLUGIN = Plugin(name="reload", parse=parse, setup=setup)

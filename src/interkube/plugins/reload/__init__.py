"""reload: re-read the Corefile when it changes."""

from interkube.plugin.setup import Plugin
from interkube.plugins.reload.parse import parse
from interkube.plugins.reload.setup import setup

PLUGIN = Plugin(name="reload", parse=parse, setup=setup)

"""bind: choose the addresses a server block listens on."""

from interkube.plugin.setup import Plugin
from interkube.plugins.bind.parse import parse
from interkube.plugins.bind.setup import setup

PLUGIN = Plugin(name="bind", parse=parse, setup=setup, multiple=True)

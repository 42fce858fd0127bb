"""loop: detect a forwarding loop at start-up and stop."""

from interkube.plugin.setup import Plugin
from interkube.plugins.loop.parse import parse
from interkube.plugins.loop.setup import setup

PLUGIN = Plugin(name="loop", parse=parse, setup=setup)

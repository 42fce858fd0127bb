"""loop: detect a forwarding loop at start-up and stop."""

from interkube.plugins.loop.parse import parse
from interkube.plugins.loop.setup import setup
from interkube.plugin.setup import Plugin

PLUGIN = Plugin(name="loop", parse=parse, setup=setup)

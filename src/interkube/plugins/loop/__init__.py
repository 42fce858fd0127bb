"""loop: detect a forwarding loop at start-up and stop."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.loop.parse import parse

PLUGIN = Plugin(name="loop", parse=parse, setup=deferred("interkube.plugins.loop.setup"))

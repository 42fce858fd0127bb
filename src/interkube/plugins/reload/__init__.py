"""reload: re-read the Corefile when it changes."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.reload.parse import parse

PLUGIN = Plugin(name="reload", parse=parse, setup=deferred("interkube.plugins.reload.setup"))

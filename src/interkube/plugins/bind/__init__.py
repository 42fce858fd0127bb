"""bind: choose the addresses a server block listens on."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.bind.parse import parse

PLUGIN = Plugin(name="bind", parse=parse, setup=deferred("interkube.plugins.bind.setup"), multiple=True)

"""local: answer localhost and the loopback reverse zones without asking anyone."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.local.parse import parse

PLUGIN = Plugin(name="local", parse=parse, setup=deferred("interkube.plugins.local.setup"))

"""local: answer localhost and the loopback reverse zones without asking anyone."""

from interkube.plugin.setup import Plugin
from interkube.plugins.local.parse import parse
from interkube.plugins.local.setup import setup

PLUGIN = Plugin(name="local", parse=parse, setup=setup)

"""health: an HTTP endpoint that says the process is alive."""

from interkube.plugin.setup import Plugin
from interkube.plugins.health.parse import parse
from interkube.plugins.health.setup import setup

PLUGIN = Plugin(name="health", parse=parse, setup=setup)

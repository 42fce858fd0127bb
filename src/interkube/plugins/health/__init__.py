"""health: an HTTP endpoint that says the process is alive."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.health.parse import parse

PLUGIN = Plugin(name="health", parse=parse, setup=deferred("interkube.plugins.health.setup"))

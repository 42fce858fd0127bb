"""ready: an HTTP endpoint that says whether every plugin is ready to answer."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.ready.parse import parse

PLUGIN = Plugin(name="ready", parse=parse, setup=deferred("interkube.plugins.ready.setup"))

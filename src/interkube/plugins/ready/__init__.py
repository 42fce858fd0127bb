"""ready: an HTTP endpoint that says whether every plugin is ready to answer."""

from interkube.plugin.setup import Plugin
from interkube.plugins.ready.parse import parse
from interkube.plugins.ready.setup import setup

PLUGIN = Plugin(name="ready", parse=parse, setup=setup)

"""errors: log errors raised while answering."""

from interkube.plugin.setup import Plugin
from interkube.plugins.errors.parse import parse
from interkube.plugins.errors.setup import setup

PLUGIN = Plugin(name="errors", parse=parse, setup=setup)

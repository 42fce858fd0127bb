"""errors: log errors raised while answering."""

from interkube.plugins.errors.parse import parse
from interkube.plugins.errors.setup import setup
from interkube.plugin.setup import Plugin

PLUGIN = Plugin(name="errors", parse=parse, setup=setup)

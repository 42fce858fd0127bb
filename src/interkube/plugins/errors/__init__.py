"""errors: log errors raised while answering."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.errors.parse import parse

PLUGIN = Plugin(name="errors", parse=parse, setup=deferred("interkube.plugins.errors.setup"))

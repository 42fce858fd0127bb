"""cache: answers repeated questions from memory, on the fast path."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.cache.parse import parse

PLUGIN = Plugin(name="cache", parse=parse, setup=deferred("interkube.plugins.cache.setup"))

"""cache: answers repeated questions from memory, on the fast path."""

from interkube.plugins.cache.parse import parse
from interkube.plugins.cache.setup import setup
from interkube.plugin.setup import Plugin

PLUGIN = Plugin(name="cache", parse=parse, setup=setup)

"""cache: answers repeated questions from memory, on the fast path."""

from interkube.plugin.setup import Plugin
from interkube.plugins.cache.parse import parse
from interkube.plugins.cache.setup import setup

PLUGIN = Plugin(name="cache", parse=parse, setup=setup)

"""any: answer ANY queries with a short HINFO record (RFC 8482)."""

from interkube.plugin.setup import Plugin
from interkube.plugins.any.parse import parse
from interkube.plugins.any.setup import setup

PLUGIN = Plugin(name="any", parse=parse, setup=setup)

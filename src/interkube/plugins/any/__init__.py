"""any: answer ANY queries with a short HINFO record (RFC 8482)."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.any.parse import parse

PLUGIN = Plugin(name="any", parse=parse, setup=deferred("interkube.plugins.any.setup"))

"""header: set or clear the AA, RA and RD flags of queries and responses."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.header.parse import parse

PLUGIN = Plugin(name="header", parse=parse, setup=deferred("interkube.plugins.header.setup"))

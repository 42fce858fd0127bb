"""header: set or clear the AA, RA and RD flags of queries and responses."""

from interkube.plugin.setup import Plugin
from interkube.plugins.header.parse import parse
from interkube.plugins.header.setup import setup

PLUGIN = Plugin(name="header", parse=parse, setup=setup)

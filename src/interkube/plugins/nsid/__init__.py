"""nsid: identify this server in answers to queries that ask for it (RFC 5001)."""

from interkube.plugin.setup import Plugin
from interkube.plugins.nsid.parse import parse
from interkube.plugins.nsid.setup import setup

PLUGIN = Plugin(name="nsid", parse=parse, setup=setup)

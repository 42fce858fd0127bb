"""nsid: identify this server in answers to queries that ask for it (RFC 5001)."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.nsid.parse import parse

PLUGIN = Plugin(name="nsid", parse=parse, setup=deferred("interkube.plugins.nsid.setup"))

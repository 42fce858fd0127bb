"""timeouts: the read, write and idle timeouts of a server's TCP and TLS connections."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.timeouts.parse import parse

PLUGIN = Plugin(name="timeouts", parse=parse, setup=deferred("interkube.plugins.timeouts.setup"))

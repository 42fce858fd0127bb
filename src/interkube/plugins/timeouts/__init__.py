"""timeouts: the read, write and idle timeouts of a server's TCP and TLS connections."""

from interkube.plugin.setup import Plugin
from interkube.plugins.timeouts.parse import parse
from interkube.plugins.timeouts.setup import setup

PLUGIN = Plugin(name="timeouts", parse=parse, setup=setup)

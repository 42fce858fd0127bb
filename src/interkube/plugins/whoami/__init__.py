"""whoami: answer every query with the client's address, port and transport."""

from interkube.plugin.setup import Plugin
from interkube.plugins.whoami.parse import parse
from interkube.plugins.whoami.setup import setup

PLUGIN = Plugin(name="whoami", parse=parse, setup=setup)

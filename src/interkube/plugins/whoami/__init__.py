"""whoami: answer every query with the client's address, port and transport."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.whoami.parse import parse

PLUGIN = Plugin(name="whoami", parse=parse, setup=deferred("interkube.plugins.whoami.setup"))

"""chaos: answer version.bind, authors.bind, hostname.bind and friends in the CH class."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.chaos.parse import parse

PLUGIN = Plugin(name="chaos", parse=parse, setup=deferred("interkube.plugins.chaos.setup"))

"""chaos: answer version.bind, authors.bind, hostname.bind and friends in the CH class."""

from interkube.plugin.setup import Plugin
from interkube.plugins.chaos.parse import parse
from interkube.plugins.chaos.setup import setup

PLUGIN = Plugin(name="chaos", parse=parse, setup=setup)

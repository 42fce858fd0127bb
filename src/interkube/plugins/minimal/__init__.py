"""minimal: send only the answer section of successful answers."""

from interkube.plugin.setup import Plugin
from interkube.plugins.minimal.parse import parse
from interkube.plugins.minimal.setup import setup

PLUGIN = Plugin(name="minimal", parse=parse, setup=setup)

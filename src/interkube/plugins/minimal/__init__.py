"""minimal: send only the answer section of successful answers."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.minimal.parse import parse

PLUGIN = Plugin(name="minimal", parse=parse, setup=deferred("interkube.plugins.minimal.setup"))

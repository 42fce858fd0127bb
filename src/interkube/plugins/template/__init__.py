"""template: answers made from Go templates for names that match regular expressions."""

from interkube.plugin.setup import Plugin
from interkube.plugins.template.parse import parse
from interkube.plugins.template.setup import setup

PLUGIN = Plugin(name="template", parse=parse, setup=setup, multiple=True)

"""template: answers made from Go templates for names that match regular expressions."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.template.parse import parse

PLUGIN = Plugin(name="template", parse=parse, setup=deferred("interkube.plugins.template.setup"), multiple=True)

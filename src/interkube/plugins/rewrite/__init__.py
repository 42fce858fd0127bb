"""rewrite: answer a rewritten question (name, type, class, EDNS options) and rewrite the answer."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.rewrite.parse import parse

PLUGIN = Plugin(name="rewrite", parse=parse, setup=deferred("interkube.plugins.rewrite.setup"), multiple=True)

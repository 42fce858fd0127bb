"""rewrite: answer a rewritten question (name, type, class, EDNS options) and rewrite the answer."""

from interkube.plugin.setup import Plugin
from interkube.plugins.rewrite.parse import parse
from interkube.plugins.rewrite.setup import setup

PLUGIN = Plugin(name="rewrite", parse=parse, setup=setup, multiple=True)

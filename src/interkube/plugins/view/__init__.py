"""view: server blocks of one zone chosen per query by the client's address or the question."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.view.parse import parse

PLUGIN = Plugin(name="view", parse=parse, setup=deferred("interkube.plugins.view.setup"))

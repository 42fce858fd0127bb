"""view: server blocks of one zone chosen per query by the client's address or the question."""

from interkube.plugin.setup import Plugin
from interkube.plugins.view.parse import parse
from interkube.plugins.view.setup import setup

PLUGIN = Plugin(name="view", parse=parse, setup=setup)

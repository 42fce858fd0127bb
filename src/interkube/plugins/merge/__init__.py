"""merge: a merged all-clusters zone, by asking every cluster's DNS and merging the answers."""

from interkube.plugin.setup import Plugin
from interkube.plugins.merge.parse import parse
from interkube.plugins.merge.setup import setup

PLUGIN = Plugin(name="merge", parse=parse, setup=setup, multiple=True)

"""merge: a merged all-clusters zone, by asking every cluster's DNS and merging the answers."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.merge.parse import parse

PLUGIN = Plugin(name="merge", parse=parse, setup=deferred("interkube.plugins.merge.setup"), multiple=True)

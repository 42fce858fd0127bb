"""clusterset: one zone merging several clusters' Services (`cluster.all`, MCS `clusterset.local`)."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.clusterset.parse import parse

# Several zones may each merge their own set: `clusterset cluster.all {...}` beside
# `clusterset clusterset.local { mcs }` in one server block.
PLUGIN = Plugin(name="clusterset", parse=parse, setup=deferred("interkube.plugins.clusterset.setup"), multiple=True)

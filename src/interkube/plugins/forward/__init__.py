"""forward: send queries to upstream DNS servers."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.forward.parse import parse

PLUGIN = Plugin(name="forward", parse=parse, setup=deferred("interkube.plugins.forward.setup"), multiple=True)

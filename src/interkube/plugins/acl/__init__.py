"""acl: allow, block, filter or drop queries by type and source."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.acl.parse import parse

PLUGIN = Plugin(name="acl", parse=parse, setup=deferred("interkube.plugins.acl.setup"), multiple=True)

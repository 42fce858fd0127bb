"""acl: allow, block, filter or drop queries by type and source."""

from interkube.plugin.setup import Plugin
from interkube.plugins.acl.parse import parse
from interkube.plugins.acl.setup import setup

PLUGIN = Plugin(name="acl", parse=parse, setup=setup, multiple=True)

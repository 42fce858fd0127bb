"""autopath: walk a client's search path on the server and answer its first name that exists."""

from interkube.plugin.setup import Plugin
from interkube.plugins.autopath.parse import parse
from interkube.plugins.autopath.setup import setup

PLUGIN = Plugin(name="autopath", parse=parse, setup=setup)

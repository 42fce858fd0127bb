"""autopath: walk a client's search path on the server and answer its first name that exists."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.autopath.parse import parse

PLUGIN = Plugin(name="autopath", parse=parse, setup=deferred("interkube.plugins.autopath.setup"))

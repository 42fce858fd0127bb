"""bufsize: cap the EDNS UDP payload size a query advertises."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.bufsize.parse import parse

PLUGIN = Plugin(name="bufsize", parse=parse, setup=deferred("interkube.plugins.bufsize.setup"))

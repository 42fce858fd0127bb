"""bufsize: cap the EDNS UDP payload size a query advertises."""

from interkube.plugin.setup import Plugin
from interkube.plugins.bufsize.parse import parse
from interkube.plugins.bufsize.setup import setup

PLUGIN = Plugin(name="bufsize", parse=parse, setup=setup)

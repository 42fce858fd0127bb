"""loadbalance: randomize the order of A, AAAA and MX records."""

from interkube.plugin.setup import Plugin
from interkube.plugins.loadbalance.parse import parse
from interkube.plugins.loadbalance.setup import setup

PLUGIN = Plugin(name="loadbalance", parse=parse, setup=setup)

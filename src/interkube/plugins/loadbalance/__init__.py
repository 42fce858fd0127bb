"""loadbalance: randomize the order of A, AAAA and MX records."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.loadbalance.parse import parse

PLUGIN = Plugin(name="loadbalance", parse=parse, setup=deferred("interkube.plugins.loadbalance.setup"))

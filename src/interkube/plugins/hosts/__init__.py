"""hosts: A, AAAA and PTR answers from a hosts(5) file and inline entries."""

from interkube.plugins.hosts.parse import parse
from interkube.plugins.hosts.setup import setup
from interkube.plugin.setup import Plugin

PLUGIN = Plugin(name="hosts", parse=parse, setup=setup)

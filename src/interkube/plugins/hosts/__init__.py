"""hosts: A, AAAA and PTR answers from a hosts(5) file and inline entries."""

from interkube.plugin.setup import Plugin
from interkube.plugins.hosts.parse import parse
from interkube.plugins.hosts.setup import setup

PLUGIN = Plugin(name="hosts", parse=parse, setup=setup)

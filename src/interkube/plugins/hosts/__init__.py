"""hosts: A, AAAA and PTR answers from a hosts(5) file and inline entries."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.hosts.parse import parse

PLUGIN = Plugin(name="hosts", parse=parse, setup=deferred("interkube.plugins.hosts.setup"))

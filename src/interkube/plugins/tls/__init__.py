"""tls: the certificate, key and client authentication of tls:// (DNS-over-TLS) server blocks."""

from interkube.plugin.setup import Plugin
from interkube.plugins.tls.parse import parse
from interkube.plugins.tls.setup import setup

PLUGIN = Plugin(name="tls", parse=parse, setup=setup)

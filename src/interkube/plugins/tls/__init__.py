"""tls: the certificate, key and client authentication of tls:// (DNS-over-TLS) server blocks."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.tls.parse import parse

PLUGIN = Plugin(name="tls", parse=parse, setup=deferred("interkube.plugins.tls.setup"))

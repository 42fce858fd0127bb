"""transfer: zone transfers (AXFR, IXFR answered in full) of file and kubernetes zones, and NOTIFY."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.transfer.parse import parse

# Every `transfer` directive of a block is a stanza of one handler (as in CoreDNS).
PLUGIN = Plugin(name="transfer", parse=parse, setup=deferred("interkube.plugins.transfer.setup"), multiple=True)

"""transfer: zone transfers (AXFR, IXFR answered in full) of file and kubernetes zones, and NOTIFY."""

from interkube.plugin.setup import Plugin
from interkube.plugins.transfer.parse import parse
from interkube.plugins.transfer.setup import setup

# Every `transfer` directive of a block is a stanza of one handler (as in CoreDNS).
PLUGIN = Plugin(name="transfer", parse=parse, setup=setup, multiple=True)

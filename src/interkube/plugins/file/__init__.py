"""file: authoritative answers from RFC 1035 zone files."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.file.parse import parse

# Several stanzas may share a block, one per zone file (`file db.a a.org` / `file db.b b.org`).
PLUGIN = Plugin(name="file", parse=parse, setup=deferred("interkube.plugins.file.setup"), multiple=True)

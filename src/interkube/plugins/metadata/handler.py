"""The metadata handler: a fresh table of metadata for every query of its server block.

The table (``Request.meta``) is what makes metadata exist for a query: plugins set labels in it
(see :mod:`interkube.plugin.metadata`) and consumers read them, the *log* plugin's ``{/LABEL}``
placeholders among them. For the queries of its zones the block's providers are called first,
in order, so that the plugins after this one see their labels; as in CoreDNS, the table exists
for the block's other queries too, for the labels plugins set while answering. A query the
fast path hands to the slow path starts over with a fresh table, so no value is left from the
first pass.
"""

from __future__ import annotations

from collections.abc import Iterable

from interkube.dns.names import ZoneSet
from interkube.plugin.handler import Handler, passes_later
from interkube.plugin.metadata import Providers
from interkube.plugin.request import Request


class MetadataHandler(Handler):
    plugin = "metadata"

    def __init__(self, zones: Iterable[str], providers: Providers | None = None) -> None:
        self.zones = ZoneSet(zones)
        self.providers = providers if providers is not None else Providers()

    def collect(self, req: Request) -> None:
        req.meta = {}
        if not self.providers or self.zones.match(req.query.lname) is None:
            return
        for provide in self.providers:
            provide(req)

    @passes_later
    def fast(self, req: Request) -> bytes | None:
        self.collect(req)
        return self.next.fast(req)

    async def serve(self, req: Request) -> bytes:
        self.collect(req)
        return await self.next.serve(req)

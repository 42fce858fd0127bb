"""The bufsize handler: a query that advertises more than SIZE bytes is read as advertising SIZE.

As CoreDNS's, it changes the query itself: the plugins after it see the smaller size (a
forwarded query carries it to the upstream), and the answer is cut to fit it over UDP (TC set),
so that no answer is large enough to be fragmented. Queries without EDNS, or advertising less,
are left alone. The size is two bytes of the query's OPT record, rewritten in place.
"""

from __future__ import annotations

import struct

from interkube.plugin.handler import Handler, passes_later
from interkube.plugin.request import Request

_U16 = struct.Struct("!H")


class BufsizeHandler(Handler):
    plugin = "bufsize"

    def __init__(self, size: int) -> None:
        self.size = size
        self.packed = _U16.pack(size)

    def clamp(self, req: Request) -> None:
        q = req.query
        if q.edns and q.payload > self.size:
            # The OPT record follows the question: its owner (the root, one byte), its type (two
            # bytes), then the payload size in the class field.
            at = q.question_end + 3
            req.rewrite(req.wire[:at] + self.packed + req.wire[at + 2:])

    @passes_later
    def fast(self, req: Request) -> bytes | None:
        self.clamp(req)
        return self.next.fast(req)

    async def serve(self, req: Request) -> bytes:
        self.clamp(req)
        return await self.next.serve(req)

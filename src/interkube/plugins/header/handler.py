"""The header handler: flags of the query (for the plugins after it) and of the response.

Both edits are two bytes of the message: the query is rewritten before the next plugin reads it
(its RD bit is part of the question's shape, so answers kept in memory are kept for the query
as it is after the edit, and a forwarded query carries it), and the response's flags are
patched on its way back, whatever produced it. Neither sends a query to the slow path.
"""

from __future__ import annotations

from interkube.plugin.handler import Handler
from interkube.plugin.request import Request
from interkube.plugins.header.parse import FlagEdit, HeaderConfig


def edit_flags(wire: bytes, edit: FlagEdit) -> bytes:
    """``wire`` with its flags word changed by ``edit`` (the same bytes when nothing changes)."""
    flags = wire[2] << 8 | wire[3]
    new = edit.apply(flags)
    if new == flags:
        return wire
    return wire[:2] + bytes((new >> 8, new & 0xFF)) + wire[4:]


class HeaderHandler(Handler):
    plugin = "header"

    def __init__(self, cfg: HeaderConfig) -> None:
        self.query = cfg.query
        self.response = cfg.response

    def _edit_query(self, req: Request) -> None:
        if self.query:
            wire = edit_flags(req.wire, self.query)
            if wire is not req.wire:
                req.rewrite(wire)

    def fast(self, req: Request) -> bytes | None:
        self._edit_query(req)
        resp = self.next.fast(req)
        if resp and self.response:
            return edit_flags(resp, self.response)
        return resp

    async def serve(self, req: Request) -> bytes:
        self._edit_query(req)
        resp = await self.next.serve(req)
        if resp and self.response:
            return edit_flags(resp, self.response)
        return resp

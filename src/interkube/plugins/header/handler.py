"""The header handler: flags of the query (for the plugins after it) and of the response.

Both edits are two bytes of the message: the query is rewritten before the next plugin reads it
(its RD bit is part of the question's shape, so answers kept in memory are kept for the query
as it is after the edit, and a forwarded query carries it), and the response's flags are
patched on its way back, whatever produced it. Neither sends a query to the slow path.
"""

from __future__ import annotations

from interkube.plugin import later
from interkube.plugin.handler import LATER, Handler, passes_later
from interkube.plugin.request import Request
from interkube.plugins.header.parse import FlagEdit, HeaderConfig


def edit_flags(wire: bytes, edit: FlagEdit) -> bytes:
    """``wire`` with its flags word changed by ``edit`` (the same bytes when nothing changes)."""
    return _edited(wire, edit.set, edit.clear)


def _edited(wire: bytes, set_mask: int, clear_mask: int) -> bytes:
    flags = wire[2] << 8 | wire[3]
    new = (flags | set_mask) & ~clear_mask
    if new == flags:
        return wire
    return wire[:2] + bytes((new >> 8, new & 0xFF)) + wire[4:]


class HeaderHandler(Handler):
    plugin = "header"

    def __init__(self, cfg: HeaderConfig) -> None:
        # Plain ints: the masks are read for every query and every answer.
        self.query_set, self.query_clear = cfg.query.set, cfg.query.clear
        self.edits_query = bool(cfg.query)
        self.response_set, self.response_clear = cfg.response.set, cfg.response.clear
        self.edits_response = bool(cfg.response)

    def _edit_query(self, req: Request) -> None:
        wire = _edited(req.wire, self.query_set, self.query_clear)
        if wire is not req.wire:
            req.rewrite(wire)

    @passes_later
    def fast(self, req: Request) -> bytes | None:
        if self.edits_query:
            self._edit_query(req)
        resp = self.next.fast(req)
        if resp is LATER:
            if self.edits_response:
                later.after(req, self._edited_response)
            return resp
        return self._edited_response(req, resp) if resp else resp

    def _edited_response(self, req: Request, resp: bytes) -> bytes:
        if resp and self.edits_response:
            return _edited(resp, self.response_set, self.response_clear)
        return resp

    async def serve(self, req: Request) -> bytes:
        if self.edits_query:
            self._edit_query(req)
        return self._edited_response(req, await self.next.serve(req))

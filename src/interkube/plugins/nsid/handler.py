"""The nsid handler: an NSID option (RFC 5001) in the answer to a query that carries one.

Only a query whose OPT record holds an NSID option gets one back, so the rest pass with one
length comparison. The option is added to the answer's OPT record on the wire, whichever plugin
answered (an NSID option an upstream put there is replaced by ours), or an OPT record is added
when the answer has none. Answers are not kept anywhere with it: it is added to every answer.
"""

from __future__ import annotations

import struct

from interkube.dns.reader import Malformed, Walk
from interkube.dns.wire import HEADER_LEN, TYPE_OPT, has_option, opt_record
from interkube.plugin import later
from interkube.plugin.handler import LATER, Handler, passes_later
from interkube.plugin.request import Request

OPTION_NSID = 3
_U16 = struct.Struct("!H")
_OPTION_HEAD = struct.Struct("!HH")


def asks_nsid(req: Request) -> bool:
    """Whether the query's OPT record holds an NSID option."""
    return has_option(req.query, OPTION_NSID)


def _without_nsid(options: bytes) -> bytes:
    out = []
    pos = 0
    while pos + 4 <= len(options):
        code, length = _OPTION_HEAD.unpack_from(options, pos)
        if code != OPTION_NSID:
            out.append(options[pos:pos + 4 + length])
        pos += 4 + length
    return b"".join(out)


def with_nsid(resp: bytes, option: bytes, req: Request) -> bytes:
    """``resp`` with ``option`` (an encoded NSID option) in its OPT record, added if need be."""
    try:
        walked = Walk(resp)
        found = None
        for _owner, start, _section, rtype, _rclass, _ttl, rdata, rdlen in walked.records():
            if rtype == TYPE_OPT:
                found = (start, rdata, rdlen)
                break
    except Malformed:
        return resp
    if found is None:
        if len(resp) < HEADER_LEN:
            return resp
        # No OPT record: one like the query's (its payload size, its DO bit) to carry the option.
        q = req.query
        arcount = _U16.unpack_from(resp, 10)[0]
        return (resp[:10] + _U16.pack(arcount + 1) + resp[HEADER_LEN:]
                + opt_record(q.do, payload=max(q.payload, 512), options=option))
    _start, rdata, rdlen = found
    options = _without_nsid(resp[rdata:rdata + rdlen]) + option
    # Only the OPT data grows; whatever follows it (a TSIG) keeps its bytes.
    return resp[:rdata - 2] + _U16.pack(len(options)) + options + resp[rdata + rdlen:]


class NsidHandler(Handler):
    plugin = "nsid"

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.option = _OPTION_HEAD.pack(OPTION_NSID, len(data)) + data

    @passes_later
    def fast(self, req: Request) -> bytes | None:
        if not asks_nsid(req):
            return self.next.fast(req)
        resp = self.next.fast(req)
        if resp is LATER:
            later.after(req, self._with_nsid)
            return resp
        return with_nsid(resp, self.option, req) if resp else resp

    def _with_nsid(self, req: Request, resp: bytes) -> bytes:
        return with_nsid(resp, self.option, req) if resp else resp

    async def serve(self, req: Request) -> bytes:
        if not asks_nsid(req):
            return await self.next.serve(req)
        return self._with_nsid(req, await self.next.serve(req))

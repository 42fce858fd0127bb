"""The minimal handler: successful answers lose their authority and additional sections.

Which answers are cut follows CoreDNS's response.Typify: NOERROR with records in the answer
section, or NOERROR with neither a SOA (NODATA) nor NS records (a referral) in the authority
section. Denials, referrals, errors, zone transfers, NOTIFY and UPDATE pass as they are.

The cut is made on the wire bytes, whatever produced them (a template, the cache, an upstream):
the message up to the end of the answer section is a valid message by itself (compression
pointers only point backwards), followed by the EDNS OPT record when there is one (CoreDNS
drops it with the rest and its server puts the query's back; this keeps the answer's own,
extended rcode and options included). Answers with nothing to cut are passed untouched after a
look at the header.
"""

from __future__ import annotations

import struct

from interkube.dns.reader import Malformed, Walk
from interkube.dns.wire import HEADER_LEN, OPCODE_MASK, RCODE_NOERROR, TYPE_OPT, ZONE_TRANSFERS
from interkube.plugin import later
from interkube.plugin.handler import LATER, Handler, passes_later
from interkube.plugin.request import Request

TYPE_NS, TYPE_SOA = 2, 6
_COUNTS = struct.Struct("!HH")      # authority and additional counts
#: How an OPT record without options starts (root owner, type 41): 11 bytes ending in rdlen 0.
_BARE_OPT_HEAD = b"\x00\x00\x29"


def minimize(resp: bytes, qtype: int) -> bytes:
    """``resp`` with only its answer section (and OPT record) when it is a plain success."""
    if len(resp) < HEADER_LEN or resp[3] & 0x0F != RCODE_NOERROR:
        return resp  # NXDOMAIN, errors (and NXDOMAIN with answers, CoreDNS's OtherError)
    if (resp[2] << 8 | resp[3]) & OPCODE_MASK or qtype in ZONE_TRANSFERS:
        return resp  # NOTIFY, UPDATE and transfers: CoreDNS's Meta and Update types
    ns, ar = _COUNTS.unpack_from(resp, 8)
    if ns == 0 and (ar == 0 or (ar == 1 and resp[-11:-8] == _BARE_OPT_HEAD and resp[-2:] == b"\x00\x00")):
        return resp  # nothing to cut: no record beside the answer but a bare OPT (the usual case)
    try:
        walked = Walk(resp)
        answers = walked.counts[0]
        answer_end = walked.question_end
        opt = b""
        for _owner, start, section, rtype, _rclass, _ttl, rdata, rdlen in walked.records():
            if section == 0:
                answer_end = rdata + rdlen
            elif section == 1 and not answers and rtype in (TYPE_SOA, TYPE_NS):
                return resp  # NODATA (SOA) or a referral (NS): CoreDNS passes both
            elif rtype == TYPE_OPT:
                opt = resp[start:rdata + rdlen]
    except Malformed:
        return resp
    if not ns and opt and ar == 1:
        return resp  # the OPT record is all there is beside the answer
    return resp[:8] + _COUNTS.pack(0, 1 if opt else 0) + resp[HEADER_LEN:answer_end] + opt


def _minimized(req: Request, resp: bytes) -> bytes:
    """minimize() as a step for an answer that comes later (interkube.plugin.later)."""
    return minimize(resp, req.query.qtype) if resp else resp


class MinimalHandler(Handler):
    plugin = "minimal"

    @passes_later
    def fast(self, req: Request) -> bytes | None:
        resp = self.next.fast(req)
        if resp is LATER:
            later.after(req, _minimized)
            return resp
        return minimize(resp, req.query.qtype) if resp else resp

    async def serve(self, req: Request) -> bytes:
        resp = await self.next.serve(req)
        return minimize(resp, req.query.qtype) if resp else resp

"""The loadbalance handler: shuffle address and MX records in every answer that passes.

A and AAAA records are shuffled on the wire: only their rdata (4 or 16 bytes) moves, between
records of the same owner, so lengths, offsets and compression pointers stay valid and the hot
path pays no parse. MX rdata holds names that other names may point into, so MX answers are
re-rendered with dnspython (rare in DNS for Kubernetes).
"""

from __future__ import annotations

import random

import dns.message
import dns.rdatatype

from interkube.dns.reader import Malformed
from interkube.dns.wire import answer_records
from interkube.plugin.handler import Handler
from interkube.plugin.request import Request

_A, _AAAA, _MX = 1, 28, 15


def shuffle_answer(wire: bytes, rng: random.Random = random._inst) -> bytes:
    """The message with its A/AAAA (and MX) records in a random order."""
    if (wire[6] << 8 | wire[7]) < 2:
        return wire
    try:
        records = answer_records(wire)
    except Malformed:
        return wire
    groups: dict[tuple[bytes, int], list[tuple[int, int]]] = {}
    has_mx = False
    for owner, rtype, rdata, rdlen in records:
        if rtype in (_A, _AAAA):
            # The owner's first two bytes identify it well enough (almost always a pointer).
            groups.setdefault((wire[owner:owner + 2], rtype), []).append((rdata, rdlen))
        elif rtype == _MX:
            has_mx = True
    out = None
    for spots in groups.values():
        if len(spots) < 2:
            continue
        if out is None:
            out = bytearray(wire)
        values = [wire[o:o + n] for o, n in spots]
        rng.shuffle(values)
        for (o, n), v in zip(spots, values, strict=True):
            out[o:o + n] = v
    result = bytes(out) if out is not None else wire
    if has_mx:
        result = _shuffle_mx(result, rng)
    return result


def _shuffle_mx(wire: bytes, rng: random.Random) -> bytes:
    try:
        msg = dns.message.from_wire(wire)
    except Exception:  # leave a message we cannot parse as it is
        return wire
    for rrset in msg.answer:
        if rrset.rdtype == dns.rdatatype.MX and len(rrset) > 1:
            items = list(rrset)
            rng.shuffle(items)
            rrset.clear()  # type: ignore[no-untyped-call]  # unannotated in dnspython
            for rd in items:
                rrset.add(rd)
    return msg.to_wire()


class LoadbalanceHandler(Handler):
    plugin = "loadbalance"

    def fast(self, req: Request) -> bytes | None:
        resp = self.next.fast(req)
        return shuffle_answer(resp) if resp else resp

    async def serve(self, req: Request) -> bytes:
        resp = await self.next.serve(req)
        return shuffle_answer(resp) if resp else resp

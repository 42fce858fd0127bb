"""The loadbalance handler: reorder the address records of every answer that passes.

Policies, as CoreDNS's *loadbalance*, for NOERROR answers other than zone transfers:

* ``round_robin`` shuffles the A and AAAA records of each name, and MX records, in every
  section; with ``prefer``, the addresses inside the given networks then come first, in the
  order of the networks.
* ``weighted`` leaves the order alone but for the first address of the answer (and of the
  additional section) of A, AAAA and SRV questions: it is drawn at random with the weights of the
  weight file (1 for an address the file does not name) and swapped with the one that was first.

Addresses move on the wire: only their data moves (4 or 16 bytes), between records of the same
name and type, or whole records whose names are compression pointers, so lengths, offsets and
pointers stay valid and the fast path pays no parse. MX data holds names that others may point
into, so MX answers (rare for Kubernetes) are re-rendered with dnspython, as is a weighted swap
between an A and an AAAA record.
"""

from __future__ import annotations

import ipaddress
import logging
import random
from collections.abc import Callable, Sequence
from typing import NamedTuple

import dns.message
import dns.rdatatype

from interkube.dns.names import to_wire
from interkube.dns.reader import Malformed, Walk
from interkube.dns.wire import HEADER_LEN, RCODE_NOERROR, ZONE_TRANSFERS
from interkube.pkg.filewatch import WatchedFile
from interkube.pkg.ticker import Ticker
from interkube.plugin import later
from interkube.plugin.handler import LATER, Handler, passes_later
from interkube.plugin.request import Request
from interkube.plugins.loadbalance.parse import Network
from interkube.plugins.loadbalance.weights import Weights

log = logging.getLogger("interkube.plugin.loadbalance")

_A, _AAAA, _MX, _SRV = 1, 28, 15, 33
_ADDRESS = (_A, _AAAA)
_SECTIONS = ("answer", "authority", "additional")


class _Rec(NamedTuple):
    owner: bytes        # decompressed, as written
    start: int          # where the record starts (its owner)
    rtype: int
    rdata: int          # where its data starts
    rdlen: int


def _records(wire: bytes) -> list[list[_Rec]] | None:
    """The records of each section, or None for a message the reader refuses."""
    sections: list[list[_Rec]] = [[], [], []]
    try:
        for owner, start, section, rtype, _rclass, _ttl, rdata, rdlen in Walk(wire).records():
            sections[section].append(_Rec(owner, start, rtype, rdata, rdlen))
    except Malformed:
        return None
    return sections


def balanced(wire: bytes, qtype: int) -> bool:
    """Whether this answer may need reordering: NOERROR, not a transfer (CoreDNS leaves those
    alone), and a section with two records (the usual answer, one record and an OPT record, is
    passed after this look at its header: walking it would cost more than answering it)."""
    return (len(wire) > HEADER_LEN and wire[3] & 0x0F == RCODE_NOERROR and qtype not in ZONE_TRANSFERS
            and (wire[6] > 0 or wire[7] > 1 or wire[8] > 0 or wire[9] > 1 or wire[10] > 0 or wire[11] > 1))


# -- round_robin ------------------------------------------------------------------------------


def _network_rank(prefer: Sequence[Network]) -> Callable[[bytes], int]:
    def rank(rdata: bytes) -> int:
        address = ipaddress.ip_address(rdata)
        for i, net in enumerate(prefer):
            if address.version == net.version and address in net:
                return i
        return len(prefer)

    return rank


def shuffle_answer(wire: bytes, rng: random.Random = random._inst, prefer: Sequence[Network] = ()) -> bytes:
    """The message with the A/AAAA records of each name (and the MX records) in a random order;
    with ``prefer``, the addresses inside those networks first, network by network."""
    sections = _records(wire)
    if sections is None:
        return wire
    groups: dict[tuple[int, bytes, int], list[tuple[int, int]]] = {}
    has_mx = False
    for number, records in enumerate(sections):
        for rec in records:
            if rec.rtype in _ADDRESS:
                groups.setdefault((number, rec.owner.lower(), rec.rtype), []).append((rec.rdata, rec.rdlen))
            elif rec.rtype == _MX:
                has_mx = True
    out = None
    rank = _network_rank(prefer) if prefer else None
    for spots in groups.values():
        if len(spots) < 2:
            continue
        if out is None:
            out = bytearray(wire)
        values = [wire[o:o + n] for o, n in spots]
        rng.shuffle(values)
        if rank is not None:
            values.sort(key=rank)  # stable: the shuffle decides within each network
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
    for section in (msg.answer, msg.authority, msg.additional):
        for rrset in section:
            if rrset.rdtype == dns.rdatatype.MX and len(rrset) > 1:
                items = list(rrset)
                rng.shuffle(items)
                rrset.clear()  # type: ignore[no-untyped-call]  # unannotated in dnspython
                for rd in items:
                    rrset.add(rd)
    return msg.to_wire()


# -- weighted ---------------------------------------------------------------------------------


def weighted_top(wire: bytes, qtype: int, weights: Weights, rng: random.Random = random._inst) -> bytes:
    """The message with a weighted draw of its first address, in the answer and additional
    sections of A, AAAA and SRV answers."""
    if qtype not in (_A, _AAAA, _SRV):
        return wire
    sections = _records(wire)
    if sections is None:
        return wire
    out = wire
    for number in (0, 2):
        addresses = [rec for rec in sections[number] if rec.rtype in _ADDRESS]
        if len(addresses) < 2:
            continue
        top = _draw(wire, addresses, weights, rng)
        if top:
            out = _swap(out, addresses[0], addresses[top], number)
    return out


def _draw(wire: bytes, addresses: list[_Rec], weights: Weights, rng: random.Random) -> int:
    """The index of the address drawn to go first: each with the probability of its weight."""
    values = []
    for rec in addresses:
        known = weights.get(rec.owner.lower())
        values.append(known.get(wire[rec.rdata:rec.rdata + rec.rdlen], 1) if known else 1)
    point = rng.random() * sum(values)
    for i, w in enumerate(values):
        point -= w
        if point < 0:
            return i
    return len(values) - 1


def _swap(wire: bytes, first: _Rec, chosen: _Rec, section: int) -> bytes:
    buf = bytearray(wire)
    if first.rtype == chosen.rtype and first.owner.lower() == chosen.owner.lower():
        a = slice(first.rdata, first.rdata + first.rdlen)
        b = slice(chosen.rdata, chosen.rdata + chosen.rdlen)
        buf[a], buf[b] = wire[b], wire[a]
        return bytes(buf)
    if first.rtype == chosen.rtype and wire[first.start] >= 0xC0 and wire[chosen.start] >= 0xC0:
        # Owners that are compression pointers hold no label anything could point into: the
        # records (pointer, fixed fields, an address) trade places whole, their lengths equal.
        a = slice(first.start, first.rdata + first.rdlen)
        b = slice(chosen.start, chosen.rdata + chosen.rdlen)
        buf[a], buf[b] = wire[b], wire[a]
        return bytes(buf)
    return _swap_rendered(wire, chosen, section)


def _swap_rendered(wire: bytes, chosen: _Rec, section: int) -> bytes:
    """The swap through dnspython, which keeps records in sets: the chosen address's set moves
    in front of the other addresses, the chosen address in front of its set."""
    try:
        msg = dns.message.from_wire(wire)
    except Exception:  # leave a message we cannot parse as it is
        return wire
    target = chosen.rdata
    records = msg.additional if section == 2 else msg.answer
    picked = wire[target:target + chosen.rdlen]
    for i, rrset in enumerate(records):
        if rrset.rdtype != chosen.rtype or to_wire(rrset.name) != chosen.owner.lower():
            continue
        items = list(rrset)
        first = next((rd for rd in items if rd.to_wire() == picked), None)
        if first is None:
            return wire
        rrset.clear()  # type: ignore[no-untyped-call]  # unannotated in dnspython
        for rd in [first, *(rd for rd in items if rd is not first)]:
            rrset.add(rd)
        front = next(j for j, rs in enumerate(records) if rs.rdtype in _ADDRESS)
        records.insert(front, records.pop(i))
        return msg.to_wire()
    return wire


# -- the handlers -----------------------------------------------------------------------------


class LoadbalanceHandler(Handler):
    """round_robin (with its `prefer` networks)."""

    plugin = "loadbalance"
    # An answer it has nothing to shuffle in (one address per name, most Services' answers) is
    # the next handler's, as it came: that keeps its stamp. One it shuffles does not (each query
    # draws its own order).
    memo_safe = True

    def __init__(self, prefer: Sequence[Network] = (), rng: random.Random | None = None) -> None:
        self.prefer = tuple(prefer)
        self.rng = rng or random._inst

    def balance(self, resp: bytes, req: Request) -> bytes:
        if not balanced(resp, req.query.qtype):
            return resp
        return shuffle_answer(resp, self.rng, self.prefer)

    @passes_later
    def fast(self, req: Request) -> bytes | None:
        resp = self.next.fast(req)
        if resp is LATER:
            later.after(req, self._balanced)
            return resp
        if not resp:
            return resp
        balanced = self.balance(resp, req)
        if balanced is not resp:  # (shuffle_answer gives back the very bytes it left as they were)
            req.memo = None
        return balanced

    def _balanced(self, req: Request, resp: bytes) -> bytes:
        return self.balance(resp, req) if resp else resp

    async def serve(self, req: Request) -> bytes:
        resp = await self.next.serve(req)
        return self.balance(resp, req) if resp else resp


class WeightedHandler(LoadbalanceHandler):
    """weighted: the weight file's data, read again when it changes (every ``reload``)."""

    memo_safe = False  # (its weight file changes with no stamp to revoke)

    def __init__(self, watched: WatchedFile[Weights], weights: Weights, reload: float,
                 rng: random.Random | None = None) -> None:
        super().__init__(rng=rng)
        self.watched = watched
        self.weights = weights
        self.ticker = Ticker(reload, self.check, log, what="weight file check")

    def balance(self, resp: bytes, req: Request) -> bytes:
        if not balanced(resp, req.query.qtype):
            return resp
        return weighted_top(resp, req.query.qtype, self.weights, self.rng)

    async def check(self) -> None:
        weights = await self.watched.poll()
        if weights is not None:
            self.weights = weights
            log.info("reloaded weight file %s: %d names", self.watched.path, len(weights))

    async def start(self) -> None:
        self.ticker.start()

    async def stop(self) -> None:
        await self.ticker.stop()

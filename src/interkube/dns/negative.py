"""Negative answers (NXDOMAIN, NODATA, and the bare refusals) written on the wire. No I/O.

A name nobody asked before costs an answer built for it. Through dnspython (make_response,
then to_wire) that was ~100 µs, so a flood of random names in a served zone (issue 19 §7's
fuzz) kept the server busy and sent most of them to the slow path. This module writes the
same bytes from the query's own: the header, the question as the client wrote it (its letter
case), the zone's SOA in the authority section from a pre-encoded :class:`SoaRecord`, and the
OPT record, in a few µs.

"The same bytes" is what :func:`interkube.dns.message.make_response` and ``render`` give
(tests/dns/test_negative.py compares them): QR and the query's RD (dnspython copies neither CD
nor AD), AA when authoritative, no RA; an OPT record advertising 1232 bytes with the query's
DO bit and no options; names compressed as dnspython compresses them (the SOA's owner and the
suffixes of its two names point at the first place their text was written, the question
first, case-insensitively). A query asking for EDNS padding (RFC 8467) is answered padded by
dnspython: :func:`negative_response` gives None for it, and the caller builds with dnspython.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

import dns.name
import dns.rdatatype

from interkube.dns.wire import FLAG_AA, FLAG_QR, FLAG_RD, HEADER_LEN, Query, has_option, label_offsets, opt_record

if TYPE_CHECKING:
    import dns.rrset

TYPE_SOA = 6
CLASS_IN = 1
#: EDNS option PADDING (RFC 7830): dnspython pads the response of a query that carries it.
OPTION_PADDING = 12

#: INTERKUBE_NO_WIRE_NEGATIVE=1 turns this writer off for a process (negative_response gives
#: None: every negative answer is built through dnspython, as before it), so that benchmarks
#: measure both on one machine (bench/fuzz_memory.py --dnspython-negatives).
WIRE_NEGATIVE: Final = not os.environ.get("INTERKUBE_NO_WIRE_NEGATIVE")

_HEADER = struct.Struct("!HHHHH")      # flags and the four counts (the ID is the query's)
_RR_FIXED = struct.Struct("!HHIH")     # type, class, TTL, rdata length
_POINTER = struct.Struct("!H")


def _suffixes(name: dns.name.Name, zone: bytes) -> tuple[tuple[bytes, bytes, bool], ...]:
    """For each suffix of ``name`` that starts at a label, longest first, the root left out
    (what a name's compression walks): its lower-cased wire form, its first label as written,
    and whether it is a suffix of ``zone`` on one of its label boundaries (then a question in
    the zone holds it at a known place)."""
    labels = name.labels
    in_zone = {zone[off:] for off in label_offsets(zone)}
    out = []
    for i in range(len(labels) - 1):
        key = b"".join(bytes((len(x),)) + x.lower() for x in labels[i:])
        out.append((key, bytes((len(labels[i]),)) + labels[i], key in in_zone))
    return tuple(out)


class SoaRecord:
    """A zone's SOA as the authority section of a negative answer writes it: the owner is the
    zone (a pointer into the question), the two names are compressed per query."""

    __slots__ = ("zone", "fixed", "mname", "rname", "tail")

    def __init__(self, zone: bytes, ttl: int, mname: dns.name.Name, rname: dns.name.Name,
                 numbers: Sequence[int]) -> None:
        #: The zone's lower-cased wire name (the owner).
        self.zone = zone
        self.fixed = _RR_FIXED.pack(TYPE_SOA, CLASS_IN, ttl, 0)[:8]  # the rdata length is per query
        self.mname = _suffixes(mname, zone)
        self.rname = _suffixes(rname, zone)
        #: serial, refresh, retry, expire, minimum
        self.tail = struct.pack("!IIIII", *numbers)

    @classmethod
    def from_rrset(cls, rrset: dns.rrset.RRset) -> SoaRecord:
        """From the SOA RRset the dnspython answer puts in its authority section."""
        if rrset.rdtype != dns.rdatatype.SOA or len(rrset) != 1:
            raise ValueError(f"not one SOA record: {rrset}")
        soa = rrset[0]
        zone = rrset.name.canonicalize().to_wire()
        assert zone is not None  # (to_wire without a file returns the bytes)
        return cls(zone, rrset.ttl, soa.mname, soa.rname,
                   (soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum))


def _compressed(out: list[bytes], pos: int, suffixes: tuple[tuple[bytes, bytes, bool], ...], lname: bytes,
                written: dict[bytes, int]) -> int:
    """Append a name at ``pos`` as dnspython writes it: a pointer to the first place a suffix
    was written (in the question ``lname`` at HEADER_LEN, or in ``written``), else its labels;
    the suffixes written here are added to ``written``. Returns the position after it."""
    for key, label, in_zone in suffixes:
        at = written.get(key)
        if at is None and lname.endswith(key):
            start = len(lname) - len(key)
            if in_zone or _label_start(lname, start):
                at = HEADER_LEN + start
        if at is not None:
            out.append(_POINTER.pack(0xC000 | at))
            return pos + 2
        written[key] = pos
        out.append(label)
        pos += len(label)
    out.append(b"\x00")
    return pos + 1


def _label_start(name: bytes, start: int) -> bool:
    off = 0
    while off < start:
        off += name[off] + 1
    return off == start


def negative_response(query: Query, rcode: int, soa: SoaRecord | None, authoritative: bool = True) -> bytes | None:
    """The answer to ``query`` with ``rcode``, no answer records and ``soa`` (when given) in the
    authority section, as dnspython builds it; None for a query that asks for EDNS padding (and
    when WIRE_NEGATIVE is off).

    ``query`` is a fast-path query (one question, uncompressed, at most an OPT record) whose
    name lies in ``soa.zone``.
    """
    wire = query.wire
    if not WIRE_NEGATIVE or has_option(query, OPTION_PADDING):
        return None
    flags = FLAG_QR | (query.flags & FLAG_RD) | (FLAG_AA if authoritative else 0) | (rcode & 0x0F)
    question_end = query.question_end
    out = [wire[:2], _HEADER.pack(flags, 1, 0, soa is not None, query.edns), wire[HEADER_LEN:question_end]]
    if soa is not None:
        lname = query.lname
        zone = soa.zone
        if len(zone) > 1:
            out.append(_POINTER.pack(0xC000 | (HEADER_LEN + len(lname) - len(zone))))
            rdata_at = question_end + 12
        else:
            out.append(b"\x00")  # the root is never a compression target
            rdata_at = question_end + 11
        fixed = len(out)
        out.append(b"")  # (the fixed part, once the rdata's length is known)
        written: dict[bytes, int] = {}
        pos = _compressed(out, rdata_at, soa.mname, lname, written)
        pos = _compressed(out, pos, soa.rname, lname, written)
        out.append(soa.tail)
        out[fixed] = soa.fixed + _POINTER.pack(pos + 20 - rdata_at)
    if query.edns:
        out.append(opt_record(query.do))
    return b"".join(out)


__all__ = ["SoaRecord", "negative_response"]

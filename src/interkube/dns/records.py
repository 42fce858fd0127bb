"""Reading and writing DNS resource records on the wire, without dnspython. Pure: no I/O.

For paths that must take a whole response apart (the merge plugin reads every cluster's answer
to every merged query): dnspython spends about 50 µs parsing a small response into objects;
:func:`read_message` reads one into plain tuples in a few µs.

A record is ``(owner, type, class, ttl, rdata)``: ``owner`` is the uncompressed wire name as
the message spelled it (letter case kept), ``rdata`` the record data with every compression
pointer resolved, so each record stands alone and can be copied into another message as is.
Only the types whose rdata may be compressed (RFC 3597 section 4: CNAME, NS, PTR, DNAME, MX,
SRV, SOA) have names inside their rdata decompressed; other types' rdata is taken as it came.

A message is walked by the one reader, :mod:`interkube.dns.reader`, which defines what is
malformed (as dnspython does); this module adds reading the names inside rdata, and refuses
what a merge cannot use: bytes after the last record.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

# Malformed, read_name and MAX_NAME_LEN are the reader's, re-exported: merge reads and bounds
# names with them.
from interkube.dns.reader import CLASS_IN, FIXED_RDLEN, HEADER_LEN, TYPE_OPT, TYPE_TSIG, NameCache, Walk
from interkube.dns.reader import MAX_NAME_LEN as MAX_NAME_LEN
from interkube.dns.reader import Malformed as Malformed
from interkube.dns.reader import read_name as read_name

TYPE_A = 1
TYPE_NS = 2
TYPE_CNAME = 5
TYPE_SOA = 6
TYPE_PTR = 12
TYPE_MX = 15
TYPE_AAAA = 28
TYPE_SRV = 33
TYPE_DNAME = 39

#: Types whose rdata holds domain names that may be compressed: type -> (bytes before the first
#: name, number of names, bytes after the last name). SRV is a class IN type: in another class
#: its rdata is opaque (as dnspython reads it), the others are the same in every class.
NAME_RDATA: dict[int, tuple[int, int, int]] = {
    TYPE_CNAME: (0, 1, 0),
    TYPE_NS: (0, 1, 0),
    TYPE_PTR: (0, 1, 0),
    TYPE_DNAME: (0, 1, 0),
    TYPE_MX: (2, 1, 0),
    TYPE_SRV: (6, 1, 0),
    TYPE_SOA: (0, 2, 20),
}
#: Types that hold one record per RRset (dnspython's "singletons"): a second one replaces the first.
SINGLETON_TYPES = frozenset((TYPE_CNAME, TYPE_SOA, TYPE_DNAME, 30, 47))  # 30 NXT, 47 NSEC
Record = tuple[bytes, int, int, int, bytes]
#: A record of a plain answer (see :func:`read_plain_answer`), in the message's own bytes: its type
#: and class (4 bytes), its TTL, and its RDLENGTH and rdata (the record's bytes after the TTL).
PlainRecord = tuple[bytes, int, bytes]

_TYPE_SIG = 24
_TYPE_RRSIG = 46
#: Types a plain answer does not hold: names inside the rdata (which would need decompressing and
#: moving), one record per RRset, RRSIGs grouped by what they cover, and what Walk checks apart.
_NOT_PLAIN = frozenset((*NAME_RDATA, *SINGLETON_TYPES, _TYPE_SIG, _TYPE_RRSIG, TYPE_OPT, TYPE_TSIG))

_HEADER = struct.Struct("!HHHHHH")
_FLAGS_COUNTS = struct.Struct("!HHHHH")
_RR_FIXED = struct.Struct("!HHIH")
#: A record owned by the question name (a pointer to it: c0 0c) in read_plain_answer: owner,
#: type, class, TTL, RDLENGTH.
_PLAIN_RR = struct.Struct("!HHHIH")
_POINTER_QNAME = 0xC00C
#: An OPT record's fixed part: owner (the root, one byte), type, payload, TTL, RDLENGTH.
_OPT_FIXED = struct.Struct("!BHHIH")
_U32 = struct.Struct("!I")


class Message:
    """A response read by :func:`read_message`: header fields, question and the three sections.

    ``rcode`` includes the EDNS extended rcode bits; the OPT record is not in ``additional``
    but in ``opt`` (``(payload, ttl field, rdata)``); TSIG records are dropped.
    """

    __slots__ = ("id", "flags", "rcode", "question", "answer", "authority", "additional", "opt")

    def __init__(self, qid: int, flags: int, rcode: int, question: list[tuple[bytes, int, int]],
                 answer: list[Record], authority: list[Record], additional: list[Record],
                 opt: tuple[int, int, bytes] | None) -> None:
        self.id = qid
        self.flags = flags
        self.rcode = rcode
        self.question = question
        self.answer = answer
        self.authority = authority
        self.additional = additional
        self.opt = opt


def read_rdata(wire: bytes, rtype: int, offset: int, rdlen: int, cache: NameCache | None = None) -> bytes:
    """The rdata at ``offset`` with the names of :data:`NAME_RDATA` types decompressed."""
    end = offset + rdlen
    layout = NAME_RDATA.get(rtype)
    if layout is None:
        fixed = FIXED_RDLEN.get(rtype)
        if fixed is not None and rdlen != fixed:
            raise Malformed(f"type {rtype} rdata of {rdlen} bytes")
        return wire[offset:end]
    before, names, after = layout
    parts = [wire[offset:offset + before]] if before else []
    pos = offset + before
    for _ in range(names):
        name, pos = read_name(wire, pos, end, cache)
        parts.append(name)
    if pos + after != end:
        raise Malformed(f"type {rtype} rdata length does not match its contents")
    if after:
        parts.append(wire[pos:end])
    return b"".join(parts)


def read_message(wire: bytes) -> Message:
    """Read a whole message (see the module docstring). Raises :class:`Malformed`."""
    walked = Walk(wire)
    names = walked.names
    sections: list[list[Record]] = [[], [], []]
    opt = None
    # Each record's rdata names are read before the next owner: additional records' owners
    # point into the answers' rdata (SRV targets), which the name cache then holds.
    for owner, _start, section, rtype, rclass, ttl, offset, rdlen in walked.records():
        if rtype in NAME_RDATA and (rclass == CLASS_IN or rtype != TYPE_SRV):
            sections[section].append((owner, rtype, rclass, ttl, read_rdata(wire, rtype, offset, rdlen, names)))
        elif rtype == TYPE_OPT:
            opt = (rclass, ttl, wire[offset:offset + rdlen])  # the walk checked it is the one, the root's
        elif rtype != TYPE_TSIG:  # (a TSIG signs the transport, it is not data)
            sections[section].append((owner, rtype, rclass, ttl, wire[offset:offset + rdlen]))
    if walked.end != len(wire):
        raise Malformed("bytes after the last record")
    rcode = walked.flags & 0x0F
    if opt is not None:
        rcode |= (opt[1] >> 20) & 0xFF0  # the extended rcode's upper 8 bits (RFC 6891)
    return Message(walked.id, walked.flags, rcode, walked.question, sections[0], sections[1], sections[2], opt)


def read_plain_answer(wire: bytes, question: bytes) -> tuple[int, list[PlainRecord]] | None:
    """The rcode and answer records of a response of the commonest shape, or None for any other.

    The shape: one question, ``question`` (lower-cased wire: name, type, class) in any letter
    case; answer records that each own the question name by a pointer to it (``c0 0c``), of
    types without names in their rdata (:data:`NAME_RDATA`), without one-record RRsets
    (:data:`SINGLETON_TYPES`) and without RRSIG/SIG; no authority records; at most an OPT
    record as the additional section; nothing after it. That is what a cluster's DNS answers
    an address or TXT question with, and its records need no decompressing, no moving into
    another zone and no owner of their own: they are taken as slices of ``wire``.

    Wherever it returns records, :func:`read_message` reads the same message without raising,
    with the same rcode and these records as its answer (their owner the question name), an
    empty authority and additional section: a message it would refuse is never of this shape
    (the checks here are the reader's for these records, or stricter). Never raises.
    """
    n = len(wire)
    qlen = len(question)
    if qlen < 5:  # (a name and the type and class at least)
        return None
    offset = HEADER_LEN + qlen
    # Each fixed part is read with one unpack, which raises struct.error where the message is
    # cut short (a header, a record, the OPT record): not plain either.
    try:
        flags, qd, an, ns, ar = _FLAGS_COUNTS.unpack_from(wire, 2)
        if qd != 1 or ns or ar > 1 or wire[HEADER_LEN:offset].lower() != question:
            return None
        unpack = _PLAIN_RR.unpack_from
        records = []
        for _ in range(an):
            # The pointer to offset 12 is read as the question name, which ends before the
            # record (the reader's rule for a pointer).
            owner, rtype, rclass, _ttl, rdlen = unpack(wire, offset)
            end = offset + 12 + rdlen
            if owner != _POINTER_QNAME or end > n or rtype in _NOT_PLAIN or \
                    (rclass == CLASS_IN and FIXED_RDLEN.get(rtype, rdlen) != rdlen):
                return None
            records.append((wire[offset + 2:offset + 6], _ttl, wire[offset + 10:end]))
            offset = end
        rcode = flags & 0x0F
        if ar:
            root, rtype, _payload, opt_ttl, rdlen = _OPT_FIXED.unpack_from(wire, offset)
            if root or rtype != TYPE_OPT:
                return None
            offset += 11 + rdlen
            rcode |= (opt_ttl >> 20) & 0xFF0  # the extended rcode's upper 8 bits (RFC 6891)
    except struct.error:
        return None
    if offset != n:
        return None
    return rcode, records


def plain_type_table() -> bytes:
    """What :func:`read_plain_answer` asks of a record's type, as a table of 65,536 bytes by type
    for the C helper's reading of the same shape (``interkube._udpfast.merge_plain``): 255 where
    the type is not plain, else the RDLENGTH a record of class IN must have (0: any)."""
    table = bytearray(65536)
    for rtype, rdlen in FIXED_RDLEN.items():
        assert 0 < rdlen < 255
        table[rtype] = rdlen
    for rtype in _NOT_PLAIN:
        table[rtype] = 255
    return bytes(table)


def name_end(name: bytes, offset: int = 0) -> int:
    """Offset just past the uncompressed name at ``offset`` (in a name or decompressed rdata)."""
    while True:
        length = name[offset]
        if length == 0:
            return offset + 1
        offset += length + 1


def rdata_names(rtype: int, rdata: bytes) -> list[tuple[int, int]]:
    """(start, end) of each name in decompressed rdata of a :data:`NAME_RDATA` type; [] for others."""
    layout = NAME_RDATA.get(rtype)
    if layout is None:
        return []
    pos = layout[0]
    spans = []
    for _ in range(layout[1]):
        end = name_end(rdata, pos)
        spans.append((pos, end))
        pos = end
    return spans


def rdata_key(rtype: int, rdata: bytes) -> bytes:
    """What two rdatas are compared by: their names lower-cased, everything else as is.

    (Lower-casing a whole wire name is safe: label lengths are below 64, never ASCII letters.)
    """
    layout = NAME_RDATA.get(rtype)
    if layout is None:
        return rdata
    if layout == (0, 1, 0):
        return rdata.lower()
    spans = rdata_names(rtype, rdata)
    out = []
    pos = 0
    for start, end in spans:
        out.append(rdata[pos:start])
        out.append(rdata[start:end].lower())
        pos = end
    out.append(rdata[pos:])
    return b"".join(out)


def is_label_suffix(name: bytes, suffix_len: int) -> bool:
    """True when the last ``suffix_len`` bytes of the uncompressed ``name`` start on a label."""
    cut = len(name) - suffix_len
    offset = 0
    while offset < cut:
        offset += name[offset] + 1
    return offset == cut


def move_name(name: bytes, src: bytes, dst: bytes) -> bytes:
    """``name`` moved from zone ``src`` (lower-cased wire) to zone ``dst``; unchanged outside ``src``.

    Case-insensitive on the zone, on label boundaries (``xcluster.local`` is not in
    ``cluster.local``); the labels before the zone keep their case.
    """
    n = len(src)
    if len(name) < n or name[-n:].lower() != src or not is_label_suffix(name, n):
        return name
    return name[:-n] + dst


def map_rdata_names(rtype: int, rdata: bytes, fn: Callable[[bytes], bytes]) -> bytes:
    """Decompressed ``rdata`` with ``fn`` applied to each name in it."""
    layout = NAME_RDATA.get(rtype)
    if layout is None:
        return rdata
    if layout == (0, 1, 0):
        return fn(rdata)
    out = []
    pos = 0
    for start, end in rdata_names(rtype, rdata):
        out.append(rdata[pos:start])
        out.append(fn(rdata[start:end]))
        pos = end
    out.append(rdata[pos:])
    return b"".join(out)


def encode_record(owner: bytes, rtype: int, rclass: int, ttl: int, rdata: bytes) -> bytes:
    """One record in wire form; ``owner`` is written as given (a name or a pointer)."""
    return owner + _RR_FIXED.pack(rtype, rclass, ttl, len(rdata)) + rdata


def encode_header(qid: bytes, flags: int, qd: int, an: int, ns: int, ar: int) -> bytes:
    """A message header; ``qid`` is the 2-byte ID as it came."""
    return qid + _HEADER.pack(0, flags, qd, an, ns, ar)[2:]


def soa_minimum(rdata: bytes) -> int:
    """The MINIMUM field of decompressed SOA rdata (its last four bytes)."""
    minimum: int = _U32.unpack_from(rdata, len(rdata) - 4)[0]
    return minimum


def with_soa_minimum(rdata: bytes, minimum: int) -> bytes:
    """Decompressed SOA rdata with its MINIMUM field replaced."""
    return rdata[:-4] + _U32.pack(minimum)

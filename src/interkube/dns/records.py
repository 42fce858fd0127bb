"""Reading and writing DNS resource records on the wire, without dnspython. Pure: no I/O.

For paths that must take a whole response apart (the merge plugin reads every cluster's answer
to every merged query): dnspython spends about 50 µs parsing a small response into objects;
:func:`read_message` reads one into plain tuples in a few µs.

A record is ``(owner, type, class, ttl, rdata)``: ``owner`` is the uncompressed wire name as
the message spelled it (letter case kept), ``rdata`` the record data with every compression
pointer resolved, so each record stands alone and can be copied into another message as is.
Only the types whose rdata may be compressed (RFC 3597 section 4: CNAME, NS, PTR, DNAME, MX,
SRV, SOA) have names inside their rdata decompressed; other types' rdata is taken as it came.

What counts as malformed follows dnspython's reader, so that anything dnspython refused is
refused here too: compression pointers must point backwards, each hop before the previous
one, and the name they point to must end before the pointer's own name segment starts (which
also makes loops impossible); at most 16 hops; labels of type 0x40/0x80 are refused; names are
at most 255 bytes; rdata of the name-bearing types (and of A and AAAA) must have exactly its
length; an OPT record may only stand in the additional section, once, owned by the root; no
bytes may follow the last record.
"""

from __future__ import annotations

import struct

from interkube.dns.wire import HEADER_LEN, TYPE_OPT

TYPE_A = 1
TYPE_NS = 2
TYPE_CNAME = 5
TYPE_SOA = 6
TYPE_PTR = 12
TYPE_MX = 15
TYPE_AAAA = 28
TYPE_SRV = 33
TYPE_DNAME = 39
TYPE_TSIG = 250

#: Types whose rdata holds domain names that may be compressed: type -> (bytes before the first
#: name, number of names, bytes after the last name).
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
#: Fixed rdata lengths checked on reading (the types a merged answer mostly carries).
_FIXED_RDLEN = {TYPE_A: 4, TYPE_AAAA: 16}

MAX_NAME_LEN = 255
MAX_POINTER_HOPS = 16

Record = tuple[bytes, int, int, int, bytes]

_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")
_U32 = struct.Struct("!I")


class Malformed(ValueError):
    """The message cannot be read (the text says where)."""


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


def read_name(wire: bytes, offset: int, end: int | None = None,
              cache: dict[int, tuple[bytes, int, int]] | None = None) -> tuple[bytes, int]:
    """The name at ``offset`` decompressed, and the offset just past it in ``wire``.

    ``end`` bounds the name's first segment (the rdata end for names inside rdata). ``cache``
    (one per message) remembers names already read by where they start, so the usual owner
    that points at the question costs a dict lookup; it maps a start to the name and the end
    of its first segment (which decides whether the entry fits a later pointer's bounds) and
    its pointer hops.
    Raises :class:`Malformed`.
    """
    if end is None:
        end = len(wire)
    parts: list[bytes] = []
    total = 1  # the root byte
    start = offset     # where the current segment starts: pointers must point below it
    origin = offset    # where the name starts: its cache key
    after = -1         # the offset just past the name in the message (first pointer + 2)
    hops = 0
    while True:
        if offset >= end:
            raise Malformed("name runs past its bounds")
        length = wire[offset]
        if length == 0:
            break
        if length < 64:
            total += length + 1
            if total > MAX_NAME_LEN:
                raise Malformed("name longer than 255 bytes")
            offset += length + 1
            continue
        if length < 192:
            raise Malformed(f"label type {length >> 6:#x}")
        if offset + 1 >= end:
            raise Malformed("compression pointer runs past its bounds")
        target = ((length & 0x3F) << 8) | wire[offset + 1]
        if target >= start:
            raise Malformed("compression pointer does not point backwards")
        if start < offset:
            parts.append(wire[start:offset])
        if after < 0:
            after = offset + 2
        hops += 1
        if hops > MAX_POINTER_HOPS:
            raise Malformed("compression pointer chain too long")
        if cache is not None:
            hit = cache.get(target)
            # The cached name was read from the same bytes; it fits if its first segment ends
            # before this segment begins (dnspython's bound for a pointer target).
            if hit is not None and hit[1] <= start:
                name = b"".join(parts) + hit[0] if parts else hit[0]
                if len(name) > MAX_NAME_LEN:
                    raise Malformed("name longer than 255 bytes")
                if hops + hit[2] > MAX_POINTER_HOPS:
                    raise Malformed("compression pointer chain too long")
                cache[origin] = (name, after, hops + hit[2])
                return name, after
        end = start
        start = offset = target
    if start < offset:
        parts.append(wire[start:offset])
    name = b"".join(parts) + b"\x00" if parts else b"\x00"
    if after < 0:
        after = offset + 1
    if len(name) > MAX_NAME_LEN:
        raise Malformed("name longer than 255 bytes")
    if cache is not None:
        cache[origin] = (name, after, hops)
    return name, after


def read_rdata(wire: bytes, rtype: int, offset: int, rdlen: int,
               cache: dict[int, tuple[bytes, int, int]] | None = None) -> bytes:
    """The rdata at ``offset`` with the names of :data:`NAME_RDATA` types decompressed."""
    end = offset + rdlen
    layout = NAME_RDATA.get(rtype)
    if layout is None:
        fixed = _FIXED_RDLEN.get(rtype)
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
    n = len(wire)
    if n < HEADER_LEN:
        raise Malformed("shorter than a header")
    qid, flags, qd, an, ns, ar = _HEADER.unpack_from(wire)
    cache: dict[int, tuple[bytes, int, int]] = {}
    offset = HEADER_LEN
    question = []
    for _ in range(qd):
        name, offset = read_name(wire, offset, n, cache)
        if offset + 4 > n:
            raise Malformed("question runs past the end")
        qtype, qclass = struct.unpack_from("!HH", wire, offset)
        offset += 4
        question.append((name, qtype, qclass))
    sections: list[list[Record]] = [[], [], []]
    opt = None
    unpack = _RR_FIXED.unpack_from
    for section, count in ((0, an), (1, ns), (2, ar)):
        records = sections[section]
        for _ in range(count):
            # Most owners are one pointer to a name read before (the question's): a dict hit.
            head = wire[offset] if offset < n else 0
            hit = cache.get(((head & 0x3F) << 8) | wire[offset + 1]) if head >= 0xC0 and offset + 1 < n else None
            if hit is not None and hit[1] <= offset and hit[2] < MAX_POINTER_HOPS:
                owner = hit[0]
                offset += 2
            else:
                owner, offset = read_name(wire, offset, n, cache)
            if offset + 10 > n:
                raise Malformed("record header runs past the end")
            rtype, rclass, ttl, rdlen = unpack(wire, offset)
            offset += 10
            if offset + rdlen > n:
                raise Malformed("rdata runs past the end")
            end = offset + rdlen
            if rtype in NAME_RDATA:
                records.append((owner, rtype, rclass, ttl, read_rdata(wire, rtype, offset, rdlen, cache)))
            elif rtype == TYPE_OPT:
                if section != 2 or opt is not None or owner != b"\x00":
                    raise Malformed("misplaced OPT record")
                opt = (rclass, ttl, wire[offset:end])
            elif rtype != TYPE_TSIG:  # (a TSIG signs the transport, it is not data)
                if rdlen != _FIXED_RDLEN.get(rtype, rdlen):
                    raise Malformed(f"type {rtype} rdata of {rdlen} bytes")
                records.append((owner, rtype, rclass, ttl, wire[offset:end]))
            offset = end
    if offset != n:
        raise Malformed("bytes after the last record")
    rcode = flags & 0x0F
    if opt is not None:
        rcode |= (opt[1] >> 20) & 0xFF0  # the extended rcode's upper 8 bits (RFC 6891)
    return Message(qid, flags, rcode, question, sections[0], sections[1], sections[2], opt)


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


def map_rdata_names(rtype: int, rdata: bytes, fn) -> bytes:  # type: ignore[no-untyped-def]
    """Decompressed ``rdata`` with ``fn`` applied to each name in it."""
    layout = NAME_RDATA.get(rtype)
    if layout is None:
        return rdata
    if layout == (0, 1, 0):
        return fn(rdata)  # type: ignore[no-any-return]
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
    return _U32.unpack_from(rdata, len(rdata) - 4)[0]


def with_soa_minimum(rdata: bytes, minimum: int) -> bytes:
    """Decompressed SOA rdata with its MINIMUM field replaced."""
    return rdata[:-4] + _U32.pack(minimum)

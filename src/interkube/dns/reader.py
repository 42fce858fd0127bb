"""The one reader of DNS messages on the wire: header, names, records and EDNS options. Pure.

The paths that take messages apart without dnspython all read through here: the cache walks
every response it stores, merge reads every cluster's answer, the fast path walks the rare
response it must truncate, and the dispatcher checks every query it admits. dnspython spends
about 50 µs on a small message; a walk here costs a few µs.

Everything is bounded by the bytes given, and a message that cannot be read raises
:class:`Malformed` (never IndexError or struct.error). What counts as malformed is dnspython's
reading (the rest of the server parses with it), so that a message dnspython refuses is refused
here too wherever this reader looks:

* names: labels of at most 63 bytes; the reserved label types 0x40 and 0x80 are refused; at
  most 255 bytes. A compression pointer must point backwards, before the segment that holds
  it, and the name it points to must end before that segment starts: each hop lands strictly
  lower in the message, so there are no loops and no forward pointers. At most 16 hops.
* records: a count never makes the reader go past the data (each record takes at least 11
  bytes, so a count that lies fails at the end of the message); fixed fields and rdata lie
  inside it; A and AAAA rdata of class IN have their length; an OPT record stands only in the
  additional section, once, owned by the root; a TSIG only as the last additional record, of
  class ANY.
* EDNS options (:func:`check_options`, for queries): each option lies inside the OPT rdata, and
  the options dnspython reads into structure have that structure (see there).

The names of rdata (CNAME targets, SRV targets, ...) are read only by whoever needs them
(:func:`interkube.dns.records.read_rdata`); walking a message does not decompress them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from interkube.errors import MalformedMessage

HEADER_LEN = 12
TYPE_A = 1
TYPE_AAAA = 28
TYPE_OPT = 41
TYPE_TSIG = 250
CLASS_IN = 1
CLASS_ANY = 255

MAX_NAME_LEN = 255
#: dnspython's limit (dns.name.MAX_COMPRESSION_POINTER_CHAIN): with it, and every hop landing
#: below the segment it leaves, reading one name touches a bounded number of bytes.
MAX_POINTER_HOPS = 16

#: Fixed rdata lengths of class IN checked while walking (dnspython refuses others; the cache
#: and merge would otherwise copy a 5-byte "A record" along). Other classes' A is another type.
FIXED_RDLEN = {TYPE_A: 4, TYPE_AAAA: 16}

# Why a message was refused, as the `reason` label of interkube_dns_malformed_queries_total
# says it: a short, fixed vocabulary.
REASON_MESSAGE = "message"      # header, names, records, counts
REASON_OPT = "opt"              # an OPT record that is not the only one, not the root's, misplaced
REASON_OPTION = "option"        # an EDNS option that does not fit the OPT data, or is ill-formed
REASON_ECS = "ecs"              # an EDNS Client Subnet option RFC 7871 calls malformed

_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")   # type, class, ttl, rdlength
_QUESTION_FIXED = struct.Struct("!HH")
_OPTION_HEAD = struct.Struct("!HH")  # option code, option length
_U16 = struct.Struct("!H")
_ECS_HEAD = struct.Struct("!HBB")    # family, source prefix length, scope prefix length

#: Names read in one message, by where they start: (name, the offset just past its first
#: segment, its pointer hops). Owners are mostly a pointer to the question name, so with this a
#: record's owner costs a dict lookup.
NameCache = dict[int, tuple[bytes, int, int]]

#: One record as a walk finds it: (owner decompressed, offset of the record, section 0/1/2
#: for answer/authority/additional, type, class, TTL as sent, rdata offset, rdata length).
RecordAt = tuple[bytes, int, int, int, int, int, int, int]


class Malformed(MalformedMessage):
    """The message cannot be read; the text says where, ``reason`` says what (a metric label)."""

    def __init__(self, message: str, reason: str = REASON_MESSAGE) -> None:
        super().__init__(message)
        self.reason = reason


def header(wire: bytes) -> tuple[int, int, int, int, int, int]:
    """ID, flags and the four section counts. Raises :class:`Malformed` below 12 bytes."""
    if len(wire) < HEADER_LEN:
        raise Malformed("shorter than a header")
    qid, flags, qd, an, ns, ar = _HEADER.unpack_from(wire)
    return qid, flags, qd, an, ns, ar


def read_name(wire: bytes, offset: int, end: int | None = None,
              cache: NameCache | None = None, *, compressed: bool = True) -> tuple[bytes, int]:
    """The name at ``offset`` decompressed, and the offset just past it in ``wire``.

    ``end`` bounds the name's first segment (the rdata end for names inside rdata, the message
    end otherwise). ``cache`` (one per message) remembers names already read by where they
    start, each segment a pointer led to included, so that the usual owner pointing at the
    question, or at a name in an earlier record's rdata, costs a dict lookup. Where names must
    not be compressed, ``compressed=False`` refuses a pointer.
    Raises :class:`Malformed`.
    """
    if end is None:
        end = len(wire)
    total = 1          # the root byte
    start = offset     # where the current segment starts: pointers must point below it
    # The segments left behind a pointer, where each starts and the offset just past it (its
    # pointer's second byte + 1); made at the first pointer (most names read have none).
    parts: list[bytes] | None = None
    starts: list[int] = []
    afters: list[int] = []
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
            raise Malformed(f"reserved label type {length & 0xC0:#x}")
        if not compressed:
            raise Malformed("a compression pointer in a name that must not be compressed")
        if offset + 1 >= end:
            raise Malformed("compression pointer runs past its bounds")
        target = ((length & 0x3F) << 8) | wire[offset + 1]
        if target >= start:
            raise Malformed("compression pointer does not point backwards")
        if parts is None:
            parts = []
        parts.append(wire[start:offset])
        starts.append(start)
        afters.append(offset + 2)
        if len(parts) > MAX_POINTER_HOPS:
            raise Malformed("compression pointer chain too long")
        if cache is not None:
            hit = cache.get(target)
            # The cached name was read from the same bytes; it fits if its first segment ends
            # before this segment begins (dnspython's bound for a pointer target).
            if hit is not None and hit[1] <= start:
                return _joined(parts, starts, afters, hit[0], hit[2], cache)
        # The name pointed to must end before this segment starts: no overlap, no loop.
        end = start
        start = offset = target
    last = wire[start:offset + 1]
    if cache is not None:
        cache[start] = (last, offset + 1, 0)
    if parts is None:
        return last, offset + 1
    return _joined(parts, starts, afters, last, 0, cache)


def _joined(parts: list[bytes], starts: list[int], afters: list[int], name: bytes, hops: int,
            cache: NameCache | None) -> tuple[bytes, int]:
    """The name made of ``parts`` and the ``name`` (of ``hops`` hops) the last pointer led to;
    each segment's own name cached on the way, as far as it is a valid name."""
    for i in range(len(parts) - 1, -1, -1):
        name = parts[i] + name
        hops += 1
        if len(name) > MAX_NAME_LEN:
            raise Malformed("name longer than 255 bytes")
        if hops > MAX_POINTER_HOPS:
            raise Malformed("compression pointer chain too long")
        if cache is not None:
            cache[starts[i]] = (name, afters[i], hops)
    return name, afters[0]


def skip_name(wire: bytes, offset: int, end: int | None = None) -> int:
    """The offset just past the (possibly compressed) name at ``offset``, its pointers checked.

    Raises :class:`Malformed`.
    """
    return read_name(wire, offset, end)[1]


class Walk:
    """A message being read: header and question at once, then :meth:`records` one by one.

    Reading the records one at a time lets a caller read each record's rdata names before the
    next owner (the additional section's owners point into the answers' rdata), stop early,
    or keep nothing. ``names`` is the message's name cache (see :func:`read_name`); ``end``
    is the offset just past the last record read once :meth:`records` is exhausted (callers
    decide whether bytes after it matter).
    Raises :class:`Malformed` (see the module docstring for what is checked).
    """

    __slots__ = ("wire", "id", "flags", "counts", "names", "question", "question_end", "end")

    def __init__(self, wire: bytes) -> None:
        n = len(wire)
        if n < HEADER_LEN:
            raise Malformed("shorter than a header")
        self.wire = wire
        self.id, self.flags, qd, an, ns, ar = _HEADER.unpack_from(wire)
        self.counts = (an, ns, ar)
        self.names: NameCache = {}
        offset = HEADER_LEN
        question = []
        for _ in range(qd):
            name, offset = read_name(wire, offset, n, self.names)
            if offset + 4 > n:
                raise Malformed("question runs past the end")
            qtype, qclass = _QUESTION_FIXED.unpack_from(wire, offset)
            offset += 4
            question.append((name, qtype, qclass))
        self.question = question
        self.question_end = self.end = offset

    def records(self, sections: int = 3) -> Iterator[RecordAt]:
        """Each record of the first ``sections`` sections (answer, authority, additional)."""
        wire = self.wire
        n = len(wire)
        names = self.names
        offset = self.question_end
        unpack = _RR_FIXED.unpack_from
        seen_opt = False
        section = 0
        try:
            for count in self.counts[:sections]:
                for i in range(count):
                    start = offset
                    # Most owners are one pointer to a name read before (the question's): a
                    # dict hit, valid when that name ends before this record starts (read_name's
                    # rule). Reading past the end raises IndexError here: see below.
                    head = wire[offset]
                    hit = names.get(((head & 0x3F) << 8) | wire[offset + 1]) if head >= 0xC0 else None
                    if hit is not None and hit[1] <= offset and hit[2] < MAX_POINTER_HOPS:
                        owner = hit[0]
                        offset += 2
                    elif head == 0:  # the root (an OPT record's owner)
                        owner = b"\x00"
                        offset += 1
                    else:
                        owner, offset = read_name(wire, offset, n, names)
                    rtype, rclass, ttl, rdlen = unpack(wire, offset)
                    offset += 10
                    if offset + rdlen > n:
                        raise Malformed("rdata runs past the end")
                    if rtype == TYPE_OPT:
                        if section != 2 or seen_opt or owner != b"\x00":
                            raise Malformed("an OPT record that is not the one root OPT in the "
                                            "additional section", REASON_OPT)
                        seen_opt = True
                    elif rtype == TYPE_TSIG:
                        if section != 2 or i != count - 1 or rclass != CLASS_ANY:
                            raise Malformed("a TSIG record that is not the last additional record")
                    elif ((rtype == TYPE_A and rdlen != 4) or (rtype == TYPE_AAAA and rdlen != 16)) \
                            and rclass == CLASS_IN:
                        raise Malformed(f"type {rtype} rdata of {rdlen} bytes")
                    yield (owner, start, section, rtype, rclass, ttl, offset, rdlen)
                    offset += rdlen
                section += 1
        except (IndexError, struct.error):
            # An owner's first bytes or a record's fixed fields past the end of the message:
            # cheaper to catch here once than to test before every read.
            raise Malformed("record runs past the end") from None
        self.end = offset


# --- EDNS options --------------------------------------------------------------------------------

OPTION_ECS = 8
OPTION_COOKIE = 10
OPTION_EDE = 15
OPTION_REPORT_CHANNEL = 18
#: Options whose data dnspython decodes as UTF-8 text: EDE extra-text language and the three
#: filtering options (RFC 8914 drafts' codes 22-25, dns.edns).
_TEXT_OPTIONS = frozenset((22, 23, 24, 25))
#: Address bits per ECS family (RFC 7871 section 6: 1 IPv4, 2 IPv6).
_ECS_FAMILY_BITS = {1: 32, 2: 128}


#: An ECS option of family 0 with empty prefixes and no address: what `dig +subnet=0` sends to
#: ask that no client address be used. RFC 7871 defines no family 0, but miekg/dns (CoreDNS)
#: reads it, so it is accepted; dnspython cannot read it, so admission drops the option (see
#: without_ecs_opt_out), which means what the client asked for.
ECS_OPT_OUT = b"\x00\x08\x00\x04\x00\x00\x00\x00"


def check_options(wire: bytes, offset: int, end: int) -> bool:
    """Check the EDNS options in ``wire[offset:end]`` (an OPT record's rdata); True when they
    hold an ECS opt-out (:data:`ECS_OPT_OUT`), which the query must lose before dnspython reads it.

    Each option's code and length, and its data, must lie inside the rdata (RFC 6891 6.1.2).
    The options dnspython reads into structure (dns.edns) must have it, since the chain parses
    the query with dnspython:

    * Client Subnet (RFC 7871 section 6; 7.1.2 asks for FORMERR): family 1 or 2, or the
      opt-out of family 0 with empty prefixes; source and scope prefix lengths within the
      family's width; exactly the address bytes the source prefix needs, the bits past it zero.
    * COOKIE (RFC 7873 section 4): an 8-byte client cookie and no server cookie, or one of 8 to
      32 bytes.
    * Extended DNS Error (RFC 8914): a 2-byte code, then UTF-8 text.
    * Report-Channel (RFC 9567): one uncompressed domain name that fills the option.
    * EDE extra-text language and filtering options (22-25): UTF-8 text.

    Raises :class:`Malformed` with reason ``option`` or ``ecs``.
    """
    opt_out = False
    while offset < end:
        if offset + 4 > end:
            raise Malformed("an EDNS option header runs past the OPT record", REASON_OPTION)
        code, length = _OPTION_HEAD.unpack_from(wire, offset)
        offset += 4
        data_end = offset + length
        if data_end > end:
            raise Malformed(f"EDNS option {code}'s length runs past the OPT record", REASON_OPTION)
        if code == OPTION_ECS:
            if wire[offset - 4:data_end] == ECS_OPT_OUT:
                opt_out = True
            else:
                _check_ecs(wire, offset, length)
        elif code == OPTION_COOKIE:
            if length != 8 and not 16 <= length <= 40:
                raise Malformed(f"a COOKIE option of {length} bytes", REASON_OPTION)
        elif code == OPTION_EDE:
            if length < 2:
                raise Malformed("an Extended DNS Error option without an info code", REASON_OPTION)
            text = wire[offset + 2:data_end]
            _check_text(text[:-1] if text.endswith(b"\x00") else text, code)
        elif code == OPTION_REPORT_CHANNEL:
            try:
                after = read_name(wire, offset, data_end, compressed=False)[1]
            except Malformed as exc:
                raise Malformed(f"Report-Channel option: {exc}", REASON_OPTION) from None
            if after != data_end:
                raise Malformed("a Report-Channel option that is not one name", REASON_OPTION)
        elif code in _TEXT_OPTIONS:
            _check_text(wire[offset:data_end], code)
        offset = data_end
    return opt_out


def _check_ecs(wire: bytes, offset: int, length: int) -> None:
    if length < 4:
        raise Malformed("an ECS option shorter than its family and prefix lengths", REASON_ECS)
    family, source, scope = _ECS_HEAD.unpack_from(wire, offset)
    bits = _ECS_FAMILY_BITS.get(family)
    if bits is None:
        raise Malformed(f"ECS address family {family}", REASON_ECS)
    if source > bits or scope > bits:
        raise Malformed(f"ECS prefix longer than family {family} allows ({source}/{scope} > {bits})",
                        REASON_ECS)
    needed = (source + 7) // 8
    if length - 4 != needed:
        raise Malformed(f"ECS address of {length - 4} bytes for a /{source} prefix", REASON_ECS)
    if source % 8 and wire[offset + 4 + needed - 1] & (0xFF >> (source % 8)):
        raise Malformed("ECS address bits set past the source prefix", REASON_ECS)


def _check_text(text: bytes, code: int) -> None:
    try:
        text.decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed(f"EDNS option {code} text is not UTF-8", REASON_OPTION) from None


def check_query(wire: bytes) -> tuple[int, int] | None:
    """Check a whole query as the dispatcher admits it: every section walked, every OPT
    record's options checked. Bytes after the last record are left to the caller (the server
    ignores them, as dnspython's ``ignore_trailing``). Raises :class:`Malformed`.

    Returns the (start, end) of the OPT record's rdata when it holds an ECS opt-out."""
    walked = Walk(wire)
    opt_out = None
    for _owner, _start, _section, rtype, _rclass, _ttl, rdata, rdlen in walked.records():
        if rtype == TYPE_OPT and check_options(wire, rdata, rdata + rdlen):
            opt_out = (rdata, rdata + rdlen)
    return opt_out


def without_ecs_opt_out(wire: bytes, rdata: int, end: int) -> bytes:
    """``wire`` with the ECS opt-out options removed from the OPT rdata at ``wire[rdata:end]``
    (found by :func:`check_query`), its RDLENGTH adjusted."""
    kept = []
    offset = rdata
    while offset < end:
        length = _OPTION_HEAD.unpack_from(wire, offset)[1]
        option = wire[offset:offset + 4 + length]
        if option != ECS_OPT_OUT:
            kept.append(option)
        offset += 4 + length
    options = b"".join(kept)
    return wire[:rdata - 2] + _U16.pack(len(options)) + options + wire[end:]

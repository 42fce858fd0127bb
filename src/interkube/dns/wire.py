"""DNS wire format: the few operations the hot path needs, done on bytes. No I/O.

Answers that come from memory are kept as pre-encoded response templates. A query is reduced to a
*key* (the lower-cased question name as wire bytes, QTYPE, QCLASS and a one-byte *shape* that
holds what changes the response bytes: EDNS present, DO, RD and CD). A template built once by
dnspython for one query serves every later query with the same key: the server copies in the
query's ID and question bytes (which restores the client's letter case; names in the answer are
compression pointers into the question) and sends.

dnspython parses and renders a message in about 100 µs; this module does the same job for a
repeated question in about 1 µs, which is why it exists beside dnspython rather than instead
of it: everything that is not the hot path uses dnspython.
"""

from __future__ import annotations

import struct
from typing import Any

from interkube.dns.memo import Memo

# HEADER_LEN and TYPE_OPT are the reader's, and this module's for its callers (re-exported).
from interkube.dns.reader import HEADER_LEN as HEADER_LEN
from interkube.dns.reader import TYPE_OPT as TYPE_OPT
from interkube.dns.reader import Malformed, Walk, check_options, check_query, read_name, without_ecs_opt_out

FLAG_QR = 0x8000
FLAG_AA = 0x0400
FLAG_TC = 0x0200
FLAG_RD = 0x0100
FLAG_RA = 0x0080
FLAG_AD = 0x0020
FLAG_CD = 0x0010
OPCODE_MASK = 0x7800

RCODE_NOERROR = 0
RCODE_FORMERR = 1
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4
RCODE_REFUSED = 5

#: AXFR and IXFR: zone transfers, which answers from memory never offer and caches never keep.
ZONE_TRANSFERS = frozenset({251, 252})
EDNS_DO = 0x8000

#: The UDP payload size we advertise (DNS flag day 2020) and the cap for what we accept to send.
ADVERTISED_PAYLOAD = 1232
#: Without EDNS, a UDP answer may not exceed this (RFC 1035).
CLASSIC_UDP_LIMIT = 512

# Shape bits of a key (see module docstring).
SHAPE_EDNS = 0x01
SHAPE_DO = 0x02
SHAPE_RD = 0x04
SHAPE_CD = 0x08

_SHAPES = tuple(bytes((i,)) for i in range(16))
_HEADER = struct.Struct("!HHHHHH")
_U16 = struct.Struct("!H")
_U16_PAIR = struct.Struct("!HH")  # an EDNS option's code and length
_OPT_FIXED = struct.Struct("!HHIH")  # type, class(payload), ttl(ext rcode, version, flags), rdlen


class Query:
    """What the fast path knows of a query after reading its header, question and OPT record.

    Built by :func:`parse_query`; attributes are read-only by convention. Everything but
    ``wire`` depends only on the bytes after the ID, so it is computed once per distinct query
    shape and copied from a memo (see parse_query).
    """

    __slots__ = ("wire", "flags", "qname_end", "question_end", "qtype", "qclass", "lname", "key",
                 "edns", "payload", "do")

    def __init__(self, wire: bytes, flags: int, qname_end: int, qtype: int, qclass: int,
                 edns: bool, payload: int, do: bool) -> None:
        self.wire = wire
        (self.flags, self.qname_end, self.question_end, self.qtype, self.qclass, self.lname,
         self.key, self.edns, self.payload, self.do) = _info(wire, flags, qname_end, qtype, qclass,
                                                               edns, payload, do)

    @property
    def udp_limit(self) -> int:
        """The largest UDP response this client accepts."""
        if not self.edns:
            return CLASSIC_UDP_LIMIT
        return max(CLASSIC_UDP_LIMIT, self.payload)


Info = tuple[int, int, int, int, int, bytes, bytes, bool, int, bool]


def _info(wire: bytes, flags: int, qname_end: int, qtype: int, qclass: int, edns: bool,
          payload: int, do: bool) -> Info:
    shape = (SHAPE_EDNS if edns else 0) | (SHAPE_DO if do else 0) \
        | (SHAPE_RD if flags & FLAG_RD else 0) | (SHAPE_CD if flags & FLAG_CD else 0)
    # The lower-cased question name in wire form (labels and the root byte): what zones match.
    lname = wire[HEADER_LEN:qname_end].lower()
    key = lname + wire[qname_end:qname_end + 4] + _SHAPES[shape]
    return (flags, qname_end, qname_end + 4, qtype, qclass, lname, key, edns, payload, do)


def read_name_end(wire: bytes, offset: int) -> int:
    """Offset just past an uncompressed name starting at ``offset``; -1 if malformed or compressed.

    Questions never need compression pointers, so a pointer here sends the query to the slow
    path, where dnspython handles it.
    """
    n = len(wire)
    total = 0
    while True:
        if offset >= n:
            return -1
        length = wire[offset]
        if length == 0:
            return offset + 1
        if length > 63:
            return -1
        total += length + 1
        if total > 254:
            return -1
        offset += length + 1


#: parse_query results by the bytes after the ID: clients repeat the same questions, and a
#: dict lookup (~0.1 µs) is twenty times cheaper than reading the name again in Python. Bounded
#: (about 400 bytes an entry), the oldest entry forgotten first, so random names cost a parse
#: each, never memory, and never the stall of clearing a full table at once. Sized by the names
#: the plugins serve (interkube.dns.memo): two entries a name (A and AAAA asked), so that a
#: cluster of 100,000 Services asked in turn still hits (at 32,768 entries, none did: each was
#: forgotten before its name came back), up to _MEMO_CEILING (about 100 MiB).
_MEMO_LIMIT = 32768
_MEMO_PER_NAME = 2.0
_MEMO_CEILING = 1 << 18
_MEMOS: Memo[bytes, Info | None] = Memo(_MEMO_LIMIT, per_name=_MEMO_PER_NAME, ceiling=_MEMO_CEILING)
_MEMO = _MEMOS.table
#: Why the reader refused a query, by the bytes after the ID: filled by the fast parser (which
#: then answers None, the slow path) and by admissible, read by admissible, so that the
#: dispatcher's admission decides a repeated malformed query with a dict lookup. Malformed
#: queries repeat less than names (a fuzz never does): a smaller table.
_REFUSED_LIMIT = 8192
_REFUSALS: Memo[bytes, Malformed] = Memo(_REFUSED_LIMIT)
_REFUSED = _REFUSALS.table


def parse_query(wire: bytes) -> Query | None:
    """Read a plain query for the fast path; None when it needs the slow path.

    The fast path takes: QR=0, opcode QUERY, exactly one question with an uncompressed name,
    no answer or authority records, at most one additional record which must be an EDNS0 OPT
    at version 0 with well-formed options, and nothing after it. Everything else (malformed
    input included) goes to the slow path, which answers FORMERR, NOTIMP, BADVERS or parses it
    fully; :func:`admissible` tells it why a query was refused here.
    """
    tail = wire[2:]
    try:
        info = _MEMO[tail]  # (a try costs nothing in 3.11 and a subscript less than .get())
    except KeyError:
        info = _memoize(wire, tail)
    if info is None:
        return None
    q = _new_query(Query)
    q.wire = wire
    (q.flags, q.qname_end, q.question_end, q.qtype, q.qclass, q.lname, q.key, q.edns, q.payload,
     q.do) = info
    return q


_new_query = object.__new__


def _memoize(wire: bytes, tail: bytes) -> Info | None:
    parsed = _parse_info(wire)
    if isinstance(parsed, Malformed):
        _refused(tail, parsed)
        parsed = None
    _MEMOS.remember(tail, parsed)
    return parsed


def _refused(tail: bytes, problem: Malformed) -> None:
    # Kept without its traceback, nor the exception it was raised while handling (``raise ...
    # from None`` hides that one but keeps it, with its own traceback): either would keep the
    # reader's frames, and their locals, alive with every remembered refusal (a kilobyte or more
    # each).
    problem.__context__ = None
    _REFUSALS.remember(tail, problem.with_traceback(None))


def admissible(wire: bytes) -> Malformed | bytes:
    """Why the one reader refuses this query (to be answered FORMERR), or the query as the
    chain reads it: ``wire`` itself, or ``wire`` without an ECS opt-out option (see
    :data:`interkube.dns.reader.ECS_OPT_OUT`).

    For a query the fast parser refused: its verdict when it had one (a malformed EDNS option),
    else a walk of the whole query (:func:`interkube.dns.reader.check_query`), remembered too.
    The exception is returned, not raised: the same instance answers every repeat.
    """
    tail = wire[2:]
    known = _REFUSED.get(tail)
    if known is not None:
        return known
    try:
        opt_out = check_query(wire)
    except Malformed as exc:
        _refused(tail, exc)
        return exc
    return wire if opt_out is None else without_ecs_opt_out(wire, *opt_out)


def _parse_info(wire: bytes) -> Info | Malformed | None:
    if len(wire) < HEADER_LEN + 5:
        return None
    _, flags, qd, an, ns, ar = _HEADER.unpack_from(wire)
    if flags & (FLAG_QR | OPCODE_MASK) or qd != 1 or an or ns or ar > 1:
        return None
    qname_end = read_name_end(wire, HEADER_LEN)
    if qname_end < 0:
        return None
    question_end = qname_end + 4
    if question_end > len(wire):
        return None
    qtype, qclass = struct.unpack_from("!HH", wire, qname_end)
    if ar == 0:
        if question_end != len(wire):
            return None
        return _info(wire, flags, qname_end, qtype, qclass, False, 0, False)
    # One additional record: must be OPT owned by the root name.
    if question_end + 11 > len(wire) or wire[question_end] != 0:
        return None
    rtype, payload, ttl, rdlen = _OPT_FIXED.unpack_from(wire, question_end + 1)
    if rtype != TYPE_OPT or question_end + 11 + rdlen != len(wire):
        return None
    if (ttl >> 16) & 0xFF:  # EDNS version other than 0: BADVERS, slow path
        return None
    if rdlen:
        # Options are read here, once per distinct query (the memo), so that a malformed one
        # is refused at admission rather than when a handler first parses the query.
        try:
            if check_options(wire, question_end + 11, len(wire)):
                return None  # an ECS opt-out: the slow path's admission removes it
        except Malformed as exc:
            return exc
    return _info(wire, flags, qname_end, qtype, qclass, True, payload, bool(ttl & EDNS_DO))


def has_option(query: Query, code: int) -> bool:
    """Whether the query's OPT record holds an option ``code`` (the fast parser checked that its
    options are well formed; an OPT record without any has 11 bytes)."""
    wire = query.wire
    pos = query.question_end + 11
    end = len(wire)
    if not query.edns or end <= pos:
        return False
    while pos + 4 <= end:
        option, length = _U16_PAIR.unpack_from(wire, pos)
        if option == code:
            return True
        pos += 4 + length
    return False


def opt_record(do: bool, payload: int = ADVERTISED_PAYLOAD, ext_rcode: int = 0, options: bytes = b"") -> bytes:
    """An EDNS0 OPT pseudo-record carrying ``options`` (already encoded)."""
    return (b"\x00" + _OPT_FIXED.pack(TYPE_OPT, payload, (ext_rcode << 24) | (EDNS_DO if do else 0),
                                      len(options)) + options)


#: Extended DNS Error codes (RFC 8914) we send.
EDE_BLOCKED = 15
EDE_FILTERED = 17


def ede_option(code: int, text: str = "") -> bytes:
    """An Extended DNS Error EDNS option (code 15)."""
    body = _U16.pack(code) + text.encode()
    return _U16.pack(15) + _U16.pack(len(body)) + body


class Template:
    """A pre-encoded response, ready to be patched for each query with the same key."""

    __slots__ = ("head", "body", "size", "rcode", "_lname", "_rest", "stamp")

    def __init__(self, response: bytes, question_end: int) -> None:
        # ID and question come from each query; flags and counts from the template.
        self.head = response[2:HEADER_LEN]
        self.body = response[question_end:]
        self.size = len(response)
        self.rcode = response[3] & 0x0F
        #: The last query's name (the object) and everything of its response after the ID: see
        #: render().
        self._lname = b""
        self._rest = b""
        #: Set by the table that keeps this template: how long answers rendered from it may be
        #: sent from the UDP answer memo (interkube.plugin.answers.TemplateTable; None: never).
        self.stamp: Any = None

    def render(self, query: Query) -> bytes:
        """The response for ``query``: its ID and question, this template's everything else.

        Queries with one ``lname`` object have one question, byte for byte (the parse memo
        makes that object once per distinct query, and keeps it alive while this template
        refers to it), so the response after the ID is joined once per such question and kept:
        the next one costs a single concatenation (at 10,000 names, joining head, question and
        body took a tenth of a query's CPU: three objects the processor's caches had lost).
        """
        wire = query.wire
        if query.lname is self._lname:
            return wire[:2] + self._rest
        rest = self.head + wire[HEADER_LEN:query.question_end] + self.body
        self._lname = query.lname
        self._rest = rest
        return wire[:2] + rest


def template_for(response: bytes, query: Query) -> Template:
    """Turn a response built for ``query`` into a template for every query with its key."""
    return Template(response, query.question_end)


def header_flags(wire: bytes) -> int:
    flags: int = _U16.unpack_from(wire, 2)[0]
    return flags


def rcode_of(wire: bytes) -> int:
    """The header RCODE (without the EDNS extension)."""
    return wire[3] & 0x0F


def set_id(wire: bytes, qid: bytes) -> bytes:
    """``wire`` with its first two bytes replaced by ``qid`` (a 2-byte ID)."""
    return qid + wire[2:]


def error_response(wire: bytes, rcode: int, query: Query | None = None, ede: bytes = b"") -> bytes:
    """A header-and-question response with ``rcode``, built from the query's bytes.

    Works for any input of at least 12 bytes: when the question cannot be read, the response
    has no question (as for FORMERR on garbage). RD, CD and the opcode are echoed; EDNS is
    echoed when the query had an OPT record, so a BADVERS (16) rcode goes into the OPT's
    extended rcode field. ``ede`` (an encoded option) goes into that OPT record.
    """
    qflags = _U16.unpack_from(wire, 2)[0]
    flags = FLAG_QR | (qflags & (OPCODE_MASK | FLAG_RD | FLAG_CD)) | (rcode & 0x0F)
    if query is None:
        return wire[:2] + _U16.pack(flags) + b"\x00" * 8
    question = wire[HEADER_LEN:query.question_end]
    if query.edns:
        return (wire[:2] + _HEADER.pack(0, flags, 1, 0, 0, 1)[2:] + question
                + opt_record(query.do, ext_rcode=rcode >> 4, options=ede))
    return wire[:2] + _HEADER.pack(0, flags, 1, 0, 0, 0)[2:] + question


def formerr(wire: bytes) -> bytes:
    """The FORMERR answer to a query the reader refused, as CoreDNS (miekg/dns) writes it.

    The header (ID, opcode, RD and CD echoed) and the question when it can be read (written
    uncompressed, in the client's letter case); no OPT record, since the query's could not be
    trusted. ``wire`` has at least 12 bytes.
    """
    qflags = _U16.unpack_from(wire, 2)[0]
    flags = FLAG_QR | (qflags & (OPCODE_MASK | FLAG_RD | FLAG_CD)) | RCODE_FORMERR
    if wire[4:6] == b"\x00\x01":
        try:
            name, end = read_name(wire, HEADER_LEN)
        except Malformed:
            end = -1
        if 0 < end and end + 4 <= len(wire):
            return wire[:2] + _HEADER.pack(0, flags, 1, 0, 0, 0)[2:] + name + wire[end:end + 4]
    return wire[:2] + _U16.pack(flags) + b"\x00" * 8


def truncated(response: bytes, query: Query) -> bytes:
    """The response cut to fit the client's UDP limit, with TC=1 (RFC 1035 4.2.1, RFC 6891).

    As miekg/dns's Truncate (what CoreDNS sends): keep as many whole records as fit, answer
    section first, then authority, then additional, plus the OPT record. A compressed message
    only points backwards, so a byte prefix that ends on a record boundary is itself a valid
    message: no re-encoding. If the response cannot be walked, only header, question and OPT
    are sent.
    """
    limit = query.udp_limit
    records: list[tuple[int, int, int, int]] | None
    try:
        walked = Walk(response)
        # The records are cut from the response and put behind the query's question: only
        # when the two questions are as long do the response's pointers still point right.
        records = [(start, rdata + rdlen, section, rtype)
                   for _, start, section, rtype, _, _, rdata, rdlen in walked.records()] \
            if walked.question_end == query.question_end else None
    except Malformed:
        records = None
    opt = b""
    for start, end, _section, rtype in records or ():
        if rtype == TYPE_OPT:
            opt = response[start:end]  # keeps the extended rcode and options (EDE, cookie)
            break
    if not opt and query.edns:
        opt = opt_record(query.do)
    budget = limit - len(opt)
    counts = [0, 0, 0]
    cut = query.question_end
    for _start, end, section, rtype in records or ():
        if rtype == TYPE_OPT or end > budget:
            break  # records after a mid-message OPT would not stay a prefix: stop there
        counts[section] += 1
        cut = end
    flags = _U16.unpack_from(response, 2)[0] | FLAG_TC
    return (response[:2] + _HEADER.pack(0, flags, 1, counts[0], counts[1], counts[2] + bool(opt))[2:]
            + query.wire[HEADER_LEN:query.question_end] + response[query.question_end:cut] + opt)


#: Label bytes written as they are in a name's text; the others are escaped as dnspython (and
#: miekg/dns) write them: ``\\.`` for the specials, ``\\DDD`` for the rest.
_NAME_PLAIN = bytes(c for c in range(0x21, 0x7F) if c not in b'"().;\\@$')
_NAME_SPECIAL = frozenset(b'"().;\\@$')


def name_to_text(name_wire: bytes) -> str:
    """Presentation form of an uncompressed wire name, fully qualified, for logs.

    Read from the bytes (the errors and log plugins write it for a query that is already parsed;
    a dnspython parse each would cost more than the query's answer). Escapes as dnspython does.
    """
    labels = []
    off = 0
    length = name_wire[0]
    while length:
        label = name_wire[off + 1:off + 1 + length]
        if label.translate(None, _NAME_PLAIN):  # something to escape (rare): byte by byte
            labels.append("".join(chr(c) if c in _NAME_PLAIN else f"\\{chr(c)}" if c in _NAME_SPECIAL
                                  else f"\\{c:03d}" for c in label))
        else:
            labels.append(label.decode("ascii"))
        off += length + 1
        length = name_wire[off]
    return ".".join(labels) + "." if labels else "."


def label_offsets(name_wire: bytes) -> list[int]:
    """Offsets of every label start in an uncompressed wire name, root last.

    ``name_wire[off:]`` for each offset is a suffix of the name on a label boundary, longest
    first: the walk zone matching needs.
    """
    offsets = []
    off = 0
    while True:
        offsets.append(off)
        length = name_wire[off]
        if length == 0:
            return offsets
        off += length + 1


def answer_records(wire: bytes) -> list[tuple[int, int, int, int]]:
    """(owner offset, type, rdata offset, rdata length) of each answer-section record.

    Raises :class:`~interkube.dns.reader.Malformed` on a message the reader refuses.
    """
    return [(start, rtype, rdata, rdlen) for _, start, _, rtype, _, _, rdata, rdlen in Walk(wire).records(1)]

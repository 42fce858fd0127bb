"""The merge on the wire: each cluster's query made from the client's, and the answers merged.
Pure: no I/O. No dnspython either: building three queries, reading three one-record answers
and merging them takes ~16 µs here, where dnspython took ~400 µs.

Each cluster is asked the question with the merged zone replaced by its own zone
(``web.ns.svc.cluster.all`` -> ``web.ns.svc.cluster.local``); every name in its answer that lies
in its zone is written back into the merged zone, so that SRV targets, CNAME chains and the
additional records stay usable through the merged zone.

The rules, in order:

* only clusters that answered NOERROR or NXDOMAIN count; timeouts, SERVFAIL, REFUSED and
  unparsable answers are left out (the caller counts them);
* none counts: SERVFAIL;
* policy local-first and the local cluster has data: the local cluster's answer alone;
* any cluster has data: the union, each record once, each RRset with the smallest TTL any
  cluster gave it;
* the name exists somewhere (a NOERROR without data): NODATA, with a SOA;
* every counted cluster said NXDOMAIN: NXDOMAIN, with a SOA.

"Each record once" compares owner, type, class and rdata, with names (owners and the names
inside CNAME, NS, PTR, DNAME, MX, SRV and SOA rdata) compared case-insensitively. A type that
holds one record per RRset (CNAME, DNAME, SOA, NSEC, NXT) keeps the last one seen, in cluster
order, as a dnspython RRset does; RRSIGs are grouped by the type they cover.

The response is written directly: the client's ID and question bytes, QR, AA (not on SERVFAIL)
and RD copied; records owned by the question name point at it (offset 12, which keeps the
client's letter case); other names are written uncompressed; an OPT record (payload 1232, DO
echoed) when the query had EDNS.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from interkube.dns import records as rr
from interkube.dns.memo import Memo
from interkube.dns.reader import Malformed
from interkube.dns.records import Message, PlainRecord, Record
from interkube.dns.wire import (
    FLAG_AA,
    FLAG_QR,
    FLAG_RD,
    HEADER_LEN,
    RCODE_NOERROR,
    RCODE_NXDOMAIN,
    RCODE_SERVFAIL,
    Query,
    opt_record,
)
from interkube.pkg.datagrams import udpfast

#: TTL and MINIMUM of the SOA used when no cluster's negative answer carried one.
_FALLBACK_SOA_TTL = 5
_FALLBACK_SOA_FIELDS = (1, 7200, 1800, 86400, _FALLBACK_SOA_TTL)
_TYPE_RRSIG = 46
_TYPE_SIG = 24
_QNAME_POINTER = b"\xc0\x0c"
_CLASS_IN = 1
#: Length of an OPT record without options: owner (root), type, class, TTL, RDLENGTH.
_OPT_NO_OPTIONS = 11
#: The OPT record of a response, by the query's DO bit (payload 1232, DO echoed).
_OPT_RECORDS = {False: opt_record(False), True: opt_record(True)}
#: A header's flags and counts (after the ID).
_FLAGS_COUNTS = struct.Struct("!HHHHH")
#: The C helper's merge of plain answers (see merge_answers), with its table of record types;
#: None where the helper is not built.
_merge_plain = udpfast.merge_plain if udpfast is not None else None
_PLAIN_TYPES = rr.plain_type_table() if _merge_plain is not None else b""


def cluster_queries(query: Query, zone_len: int, zones: list[tuple[bytes, bytes]],
                    one_zone: bool = False) -> list[tuple[bytes, bytes]]:
    """The query for each cluster, from the client's bytes: ``(wire, lower-cased question)``.

    The question name ends with the merged zone (``zone_len`` bytes of wire form, a label
    boundary: the caller matched it); that suffix becomes each cluster's zone (``zones`` holds
    each zone's wire form as configured and lower-cased). The labels before it keep the
    client's case; header flags and the OPT record's payload and flags stay as the client sent
    them, its EDNS options (cookies, client subnet) do not go on. The question comes back
    lower-cased, as the transport matches answers by it. ``one_zone``: every zone is the first
    one (the caller knows it).
    """
    wire = query.wire
    relative_end = query.qname_end - zone_len
    head = wire[:relative_end]
    lrelative = query.lname[:relative_end - HEADER_LEN]
    qtail = wire[query.qname_end:query.question_end]
    ltail = qtail.lower()  # type and class as the transport lower-cases them (it compares bytes)
    opt = wire[query.question_end:]
    if len(opt) > _OPT_NO_OPTIONS:
        opt = opt[:_OPT_NO_OPTIONS - 2] + b"\x00\x00"
    # Clusters mostly serve the same zone (cluster.local): their queries are then the same bytes
    # (each socket writes its own ID), built once.
    if one_zone:
        zone, lzone = zones[0]
        return [(head + zone + qtail + opt, lrelative + lzone + ltail)] * len(zones)
    out: list[tuple[bytes, bytes]] = []
    last = b""
    for zone, lzone in zones:
        if zone != last or not out:
            built = (head + zone + qtail + opt, lrelative + lzone + ltail)
            last = zone
        out.append(built)
    return out


class ClusterReply:
    """What one cluster said: its zone (lower-cased wire) and its response, or why there is none.

    ``rcode`` is the response's (-1 when there is none). A response of the plain shape (see
    :func:`interkube.dns.records.read_plain_answer`: the question's own records, nothing else)
    keeps its answer records as slices of its bytes in ``plain``; ``message``, the response read
    whole, is then read only if a merge needs it (a plain reply merged with one that is not).
    """

    __slots__ = ("cluster", "zone", "rcode", "data", "plain", "wire", "_message", "failure")

    def __init__(self, cluster: str, zone: bytes, message: Message | None, failure: str | None = None) -> None:
        self.cluster = cluster
        self.zone = zone
        self._message = message
        self.rcode = -1 if message is None else message.rcode
        #: NOERROR with answer records
        self.data = message is not None and message.rcode == RCODE_NOERROR and bool(message.answer)
        self.plain: list[PlainRecord] | None = None
        self.wire: bytes | None = None
        self.failure = failure

    @classmethod
    def read(cls, cluster: str, zone: bytes, wire: bytes, question: bytes = b"") -> ClusterReply:
        """Read a cluster's response to ``question`` (lower-cased wire, as sent; b"" when not
        known: the response is then read whole); an unreadable one becomes a "malformed" failure."""
        if question:
            plain = rr.read_plain_answer(wire, question)
            if plain is not None:
                return cls.of_plain(cluster, zone, wire, plain)
        try:
            return cls(cluster, zone, rr.read_message(wire))
        except Malformed as exc:
            return cls(cluster, zone, None, f"malformed: {exc}")

    @classmethod
    def of_plain(cls, cluster: str, zone: bytes, wire: bytes, plain: tuple[int, list[PlainRecord]]) -> ClusterReply:
        """The reply of a response that :func:`interkube.dns.records.read_plain_answer` read as ``plain``."""
        reply = cls.__new__(cls)  # every slot set here once, not twice through __init__
        reply.cluster = cluster
        reply.zone = zone
        rcode, records = reply.rcode, reply.plain = plain
        reply.data = rcode == RCODE_NOERROR and bool(records)
        reply.wire = wire
        reply._message = None
        reply.failure = None
        return reply

    @property
    def message(self) -> Message | None:
        """The response read whole (None for a failure)."""
        message = self._message
        if message is None and self.wire is not None:
            # Cannot raise: what read_plain_answer takes, read_message reads alike.
            message = self._message = rr.read_message(self.wire)
        return message

    @property
    def counts(self) -> bool:
        return self.rcode == RCODE_NOERROR or self.rcode == RCODE_NXDOMAIN

    @property
    def has_data(self) -> bool:
        return self.data


#: A cluster's answer as the callback path keeps it: the response's bytes as they came (read
#: when every cluster's is in, see :func:`merge_answers`), or its reply read already (a failure,
#: an answer fetched over TCP).
Answer = bytes | ClusterReply

#: Names moved between zones, by (name, source zone, destination zone): answers repeat the same
#: names (SRV targets, CNAME targets, the asked name). Bounded, oldest first, as wire._MEMO.
_MOVED_LIMIT = 16384
_MOVES: Memo[tuple[bytes, bytes, bytes], bytes] = Memo(_MOVED_LIMIT)
_MOVED = _MOVES.table


class _TooLong(Exception):
    """A name that would pass 255 bytes once moved into the merged zone."""


def _move(name: bytes, src: bytes, dst: bytes) -> bytes:
    key = (name, src, dst)
    moved = _MOVED.get(key)
    if moved is None:
        moved = rr.move_name(name, src, dst)
        if len(moved) > rr.MAX_NAME_LEN:
            raise _TooLong
        _MOVES.remember(key, moved)
    return moved


class _Union:
    """RRsets keyed by (owner, type, class); each rdata once; the smallest TTL wins.

    An entry is ``[owner as written, type, class, ttl, {rdata key: rdata}]``.
    """

    __slots__ = ("sets",)

    def __init__(self) -> None:
        # Lists, not tuples: the TTL and the rdata table change as clusters' records come in.
        self.sets: dict[tuple[bytes, int, int, bytes], list[Any]] = {}

    def add(self, owner: bytes, owner_key: bytes, rtype: int, rclass: int, ttl: int, rdata: bytes) -> None:
        covers = rdata[:2] if rtype == _TYPE_RRSIG or rtype == _TYPE_SIG else b""
        key = (owner_key, rtype, rclass, covers)
        entry = self.sets.get(key)
        rkey = rr.rdata_key(rtype, rdata) if rtype in rr.NAME_RDATA else rdata
        if entry is None:
            self.sets[key] = [owner, rtype, rclass, ttl, {rkey: rdata}]
            return
        if ttl < entry[3]:
            entry[3] = ttl
        if rtype in rr.SINGLETON_TYPES:
            entry[4] = {rkey: rdata}
        elif rkey not in entry[4]:
            entry[4][rkey] = rdata

    def encode(self, qname: bytes) -> tuple[list[bytes], int]:
        """The records in wire form, and how many there are."""
        out = []
        for owner, rtype, rclass, ttl, rdatas in self.sets.values():
            written = _QNAME_POINTER if owner == qname else owner
            for rdata in rdatas.values():
                out.append(rr.encode_record(written, rtype, rclass, ttl, rdata))
        return out, len(out)


def _add_moved(union: _Union, records: list[Record], src: bytes, dst: bytes, asked: bytes,
               qname: bytes, lname: bytes) -> None:
    """Add a cluster's records to ``union``, their names moved from zone ``src`` to ``dst``."""
    for owner, rtype, rclass, ttl, rdata in records:
        lowner = owner.lower()
        try:
            if lowner == asked:
                owner, lowner = qname, lname  # the question's own name keeps the client's case
            else:
                owner = _move(owner, src, dst)
                lowner = owner.lower()
            if rtype in rr.NAME_RDATA:
                rdata = rr.map_rdata_names(rtype, rdata, lambda n: _move(n, src, dst))
        except _TooLong:
            continue  # cannot be named in the merged zone: left out
        union.add(owner, lowner, rtype, rclass, ttl, rdata)


def combine(query: Query, replies: list[ClusterReply], merged_zone: bytes,
            local: str | None = None, local_first: bool = False) -> bytes:
    """The merged response to ``query`` (see the module docstring for the rules).

    ``merged_zone`` is the merged zone's wire form as configured; the question name lies in it.
    """
    wire = query.wire
    qflags = (wire[2] << 8) | wire[3]
    counted = []
    with_data = []
    for r in replies:
        if r.rcode == RCODE_NOERROR or r.rcode == RCODE_NXDOMAIN:
            counted.append(r)
            if r.data:
                with_data.append(r)
    if not counted:
        return _response(query, FLAG_QR | (qflags & FLAG_RD) | RCODE_SERVFAIL, [], 0, [], 0, [], 0)
    flags = FLAG_QR | FLAG_AA | (qflags & FLAG_RD)
    if local_first and local is not None:
        mine = [r for r in with_data if r.cluster == local]
        if mine:
            with_data = mine
    if with_data:
        for r in with_data:
            if r.plain is None:
                break
        else:
            an, n_an = _plain_union([r.plain for r in with_data])  # type: ignore[misc]  # (all set)
            return _response(query, flags, an, n_an, [], 0, [], 0)
        qname = wire[HEADER_LEN:query.qname_end]
        lname = query.lname
        relative = lname[:len(lname) - len(merged_zone)]
        dst = merged_zone
        answer, additional = _Union(), _Union()
        for reply in with_data:
            m = reply.message
            assert m is not None
            asked = relative + reply.zone
            _add_moved(answer, m.answer, reply.zone, dst, asked, qname, lname)
            _add_moved(additional, m.additional, reply.zone, dst, asked, qname, lname)
        an, n_an = answer.encode(qname)
        ar, n_ar = additional.encode(qname)
        return _response(query, flags, an, n_an, [], 0, ar, n_ar)
    exists = any(r.rcode == RCODE_NOERROR for r in counted)
    if not exists:
        flags |= RCODE_NXDOMAIN
    return _response(query, flags, [], 0, [_soa(counted, merged_zone, local)], 1, [], 0)


def merge_answers(query: Query, answers: list[Answer], queries: list[tuple[bytes, bytes]],
                  clusters: Sequence[tuple[str, bytes, object]], merged_zone: bytes, local: str | None = None,
                  local_first: bool = False) -> tuple[bytes, list[ClusterReply] | None]:
    """:func:`combine` for the clusters' answers as the callback path has them: ``answers[i]``
    is cluster ``clusters[i]``'s (its name and lower-cased zone first) answer to
    ``queries[i]`` (its query and lower-cased question), see :data:`Answer`.

    Returns the merged response and the replies as combine() had them (for the caller's counts
    of what was left out), or None in their place where no ClusterReply was made: every answer
    came as bytes of the plain shape (see :func:`interkube.dns.records.read_plain_answer`),
    NOERROR or NXDOMAIN, and some with records; those are merged from their records as
    combine() merges plain replies, to the same bytes.
    """
    if _merge_plain is not None:
        # The common case in C (interkube._udpfast.merge_plain): every answer plain, some with
        # data; the same bytes as below (tests/plugins/merge/test_merge_plain_c.py compares). Why
        # C: reading three answers and merging them here took about a quarter of a merged
        # query's CPU (bench/merge_fanout.py --profile).
        local_index = -1
        if local_first and local is not None:
            local_index = next((i for i, (name, _zone, _up) in enumerate(clusters) if name == local), -1)
        merged = _merge_plain(query.wire, query.question_end, _OPT_RECORDS[query.do] if query.edns else b"",
                              answers, queries, local_index, _PLAIN_TYPES)
        if merged is not None:
            return merged, None
    plains = []
    data = []  # the answer records of each NOERROR answer with some, in cluster order
    whole = False  # whether combine() must have the replies (an answer not plain, or failed)
    read_plain = rr.read_plain_answer
    for answer, (_wire, question) in zip(answers, queries, strict=True):
        plain = read_plain(answer, question) if type(answer) is bytes else None
        plains.append(plain)
        if plain is None:
            whole = True
            continue
        rcode, records = plain
        if rcode == RCODE_NOERROR:
            if records:
                data.append(records)
        elif rcode != RCODE_NXDOMAIN:
            whole = True
    if not whole and data:
        if local_first and local is not None:
            for (name, _zone, _up), (rcode, records) in zip(clusters, plains, strict=True):  # type: ignore[misc]  # (all read)
                if name == local:
                    if rcode == RCODE_NOERROR and records:
                        data = [records]
                    break
        wire = query.wire
        an, n_an = _plain_union(data)
        return _response(query, FLAG_QR | FLAG_AA | (((wire[2] << 8) | wire[3]) & FLAG_RD), an, n_an,
                         [], 0, [], 0), None
    replies: list[ClusterReply] = []
    for answer, plain, (name, zone, _up) in zip(answers, plains, clusters, strict=True):
        if not isinstance(answer, bytes):
            replies.append(answer)
        elif plain is not None:
            replies.append(ClusterReply.of_plain(name, zone, answer, plain))
        else:  # (not plain: read whole)
            replies.append(ClusterReply.read(name, zone, answer))
    return combine(query, replies, merged_zone, local, local_first), replies


def _plain_union(answers: list[list[PlainRecord]]) -> tuple[list[bytes], int]:
    """The answer section merged from plain replies' records (``ClusterReply.plain``, one list
    per reply with data): what :class:`_Union` makes of the same records, without reading,
    moving or re-encoding any. Every record is owned by the question name and no type is a
    singleton or an RRSIG, so an RRset is its type and class (4 bytes as sent), a record's
    identity its RDLENGTH and rdata (as sent); RRsets and their records in the order first
    seen, each RRset with its smallest TTL."""
    first = answers[0]
    if len(first) == 1:
        tc, ttl, rdata = first[0]
        if len(answers) == 1:  # one cluster's one record: itself
            return [b"".join((_QNAME_POINTER, tc, ttl.to_bytes(4, "big"), rdata))], 1
        # Every reply one record of the same type (an address asked, each cluster its own or
        # the same): one RRset, its records in cluster order, each once.
        rdatas = {rdata: None}
        for records in answers:
            if len(records) != 1:
                break
            other_tc, other_ttl, other_rdata = records[0]
            if other_tc != tc:
                break
            if other_ttl < ttl:
                ttl = other_ttl
            rdatas[other_rdata] = None
        else:
            head = b"".join((_QNAME_POINTER, tc, ttl.to_bytes(4, "big")))
            return [head + rdata for rdata in rdatas], len(rdatas)
    # type and class -> [the smallest TTL, {RDLENGTH and rdata: None} in the order first seen]
    sets: dict[bytes, list[Any]] = {}
    for records in answers:
        for tc, ttl, rdata in records:
            entry = sets.get(tc)
            if entry is None:
                sets[tc] = [ttl, {rdata: None}]
                continue
            if ttl < entry[0]:
                entry[0] = ttl
            entry[1][rdata] = None
    out: list[bytes] = []
    for tc, (ttl, rdatas) in sets.items():
        head = b"".join((_QNAME_POINTER, tc, ttl.to_bytes(4, "big")))
        out.extend([head + rdata for rdata in rdatas])
    return out, len(out)


def _response(query: Query, flags: int, an: list[bytes], n_an: int, ns: list[bytes], n_ns: int,
              ar: list[bytes], n_ar: int) -> bytes:
    wire = query.wire
    if query.edns:
        ar = [*ar, _OPT_RECORDS[query.do]]
        n_ar += 1
    # (rr.encode_header inline: the client's ID as it came, then flags and counts)
    return b"".join((wire[:2], _FLAGS_COUNTS.pack(flags, 1, n_an, n_ns, n_ar), wire[HEADER_LEN:query.question_end],
                     *an, *ns, *ar))


def _soa(replies: list[ClusterReply], merged_zone: bytes, local: str | None) -> bytes:
    """The SOA for a negative answer: the local cluster's (else the first one's) moved into the
    merged zone, with the smallest TTL and the smallest MINIMUM any cluster gave, so that no
    resolver caches the merged denial longer than a cluster allowed."""
    ordered = sorted(replies, key=lambda r: r.cluster != local)
    first: tuple[ClusterReply, Record] | None = None
    ttl = minimum = -1
    for reply in ordered:
        # As an RRset per (owner, class) holding the last SOA given for it (a singleton type),
        # with the smallest TTL of all of them.
        kept: dict[tuple[bytes, int], Record] = {}
        # (a plain reply has no authority records: not read whole for them)
        for record in reply.message.authority if reply.plain is None and reply.message is not None else ():
            if record[1] != rr.TYPE_SOA:
                continue
            kept[(record[0].lower(), record[2])] = record
            ttl = record[3] if ttl < 0 else min(ttl, record[3])
        for record in kept.values():
            if first is None:
                first = (reply, record)
            m = rr.soa_minimum(record[4])
            minimum = m if minimum < 0 else min(minimum, m)
    if first is None:
        rdata = (b"\x02ns\x03dns" + merged_zone + b"\x0ahostmaster" + merged_zone
                 + b"".join(v.to_bytes(4, "big") for v in _FALLBACK_SOA_FIELDS))
        return rr.encode_record(merged_zone, rr.TYPE_SOA, _CLASS_IN, _FALLBACK_SOA_TTL, rdata)
    reply, record = first
    src = reply.zone
    try:
        rdata = rr.map_rdata_names(rr.TYPE_SOA, record[4], lambda n: _move(n, src, merged_zone))
    except _TooLong:
        rdata = record[4]  # names that cannot move stay where they are (valid in any zone)
    return rr.encode_record(merged_zone, rr.TYPE_SOA, record[2], ttl, rr.with_soa_minimum(rdata, minimum))

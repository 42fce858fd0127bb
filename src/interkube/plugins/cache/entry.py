"""Cached responses as wire bytes: what may be cached and for how long, and aged TTLs on hits.

A response is read once, when it is stored, by the one wire reader's walk over its records
(:mod:`interkube.dns.reader`, no dnspython): that walk classifies it the way CoreDNS's
response.Typify does, finds the TTL it may live for, and records the byte offset of every TTL
field (except the OPT record's, which holds EDNS flags). A response the reader refuses is passed
on but never cached.
A hit is then a :class:`~interkube.dns.wire.Template` render; once per elapsed second the entry
writes the remaining TTL into those offsets and keeps the result until the next second.
"""

from __future__ import annotations

import math
import struct
from typing import TYPE_CHECKING, Final, NamedTuple

from interkube.dns.reader import Malformed, Walk, header
from interkube.dns.wire import (
    FLAG_AA,
    FLAG_AD,
    FLAG_QR,
    FLAG_TC,
    HEADER_LEN,
    OPCODE_MASK,
    RCODE_NOERROR,
    RCODE_NXDOMAIN,
    RCODE_SERVFAIL,
    TYPE_OPT,
    Query,
    Template,
)

if TYPE_CHECKING:
    from interkube.pkg.datagrams import Stamp

SUCCESS: Final = 0
DENIAL: Final = 1
KIND_NAMES: Final = ("success", "denial")

TYPE_SOA = 6

#: RFC 8767 section 4 recommends 30 seconds for records served stale (serve_stale's RESPONSE_TTL
#: sets another).
STALE_TTL = 30
#: CoreDNS's fail-safe TTL for a response with no records at all (dnsutil.MinimalDefaultTTL).
NO_RECORDS_TTL = 5

_U32 = struct.Struct("!I")


class Analysis(NamedTuple):
    """What storing a response needs to know."""

    kind: int                   # SUCCESS or DENIAL
    servfail: bool              # a SERVFAIL, kept for the `servfail` duration
    ttl: int                    # the message TTL before clamping; -1: no records to take it from
    offsets: tuple[int, ...]    # absolute offsets of every TTL field but OPT's
    wire: bytes                 # what to keep: the response without EDNS options


#: analyse() result for a response whose question is not the query's (CoreDNS counts a drop).
DROP: Final = "drop"


def analyse(resp: bytes, q: Query) -> Analysis | str | None:
    """Classify ``resp`` (the answer to ``q``): an Analysis, None (not cacheable), or DROP."""
    end = len(resp)
    if end < q.question_end:
        return None
    _, flags, qd, an, _, _ = header(resp)
    if not flags & FLAG_QR or flags & (FLAG_TC | OPCODE_MASK) or qd != 1:
        return None
    if resp[HEADER_LEN:q.qname_end].lower() != q.lname \
            or resp[q.qname_end:q.question_end] != q.wire[q.qname_end:q.question_end]:
        return DROP
    rcode = flags & 0x0F
    offsets: list[int] = []
    keep = resp
    min_ttl = -1
    soa_minimum = -1
    try:
        walked = Walk(resp)
        for _owner, _start, section, rtype, _rclass, ttl, rdata, rdlen in walked.records():
            if rtype == TYPE_OPT:
                if ttl >> 24:  # an extended rcode (BADCOOKIE, ...): never cached
                    return None
                if rdlen:
                    # Options answer one client (a COOKIE echoes its client cookie): the cached
                    # copy keeps the OPT record without them. OPT comes last.
                    if rdata + rdlen != end:
                        return None
                    keep = resp[:rdata - 2] + b"\x00\x00"
                continue
            offsets.append(rdata - 6)
            if ttl > 0x7FFFFFFF:  # RFC 2181 section 8: read as zero
                ttl = 0
            if min_ttl < 0 or ttl < min_ttl:
                min_ttl = ttl
            if section == 1 and rtype == TYPE_SOA and rdlen >= 22:
                soa_minimum = _U32.unpack_from(resp, rdata + rdlen - 4)[0]  # the last rdata field
    except Malformed:
        return None  # passed on, never cached
    if walked.end != end:
        return None  # bytes after the last record
    found = tuple(offsets)
    # The order of CoreDNS's response.Typify.
    if rcode == RCODE_NOERROR and an:
        return Analysis(SUCCESS, False, min_ttl, found, keep)
    if soa_minimum >= 0 and rcode in (RCODE_NOERROR, RCODE_NXDOMAIN):
        # RFC 2308 section 5: a negative answer lives min(SOA TTL, SOA MINIMUM); every other
        # record's TTL bounds it too, since one TTL is written into all of them.
        return Analysis(DENIAL, False, min(min_ttl, soa_minimum), found, keep)
    if rcode == RCODE_SERVFAIL:
        return Analysis(DENIAL, True, min_ttl, found, keep)
    if rcode == RCODE_NOERROR:
        # A referral (NS in authority) or an empty NOERROR without SOA: CoreDNS caches both
        # as successes.
        return Analysis(SUCCESS, False, min_ttl, found, keep)
    return None  # NXDOMAIN without SOA (RFC 2308: not cacheable), REFUSED, FORMERR, ...


def patch_ttls(wire: bytes, offsets: tuple[int, ...], ttl: int) -> bytes:
    """``wire`` with ``ttl`` written into every offset."""
    if not offsets:
        return wire
    buf = bytearray(wire)
    packed = _U32.pack(ttl)
    for off in offsets:
        buf[off:off + 4] = packed
    return bytes(buf)


class Entry:
    """One cached response, rendered for the current second of its life."""

    __slots__ = ("key", "kind", "servfail", "prefix", "base", "offsets", "question_end", "stored",
                 "ttl", "expires", "keepttl", "tpl", "until", "_stale", "threshold", "hits",
                 "last_hit", "failed_until", "stale_ttl", "stamp")

    def __init__(self, key: bytes, kind: int, servfail: bool, response: bytes, q: Query,
                 offsets: tuple[int, ...], lifetime: float, stored: float, *, keepttl: bool,
                 prefetch_percentage: int, stale_ttl: int = STALE_TTL) -> None:
        qe = q.question_end
        flags = (response[2] << 8) | response[3]
        # A cached answer is never authoritative (CoreDNS clears AA). AD stays only for DO
        # queries: the key does not hold the query's AD bit, so assume the client did not ask.
        flags &= ~FLAG_AA
        if not q.do:
            flags &= ~FLAG_AD
        self.key = key
        self.kind = kind
        self.servfail = servfail
        self.prefix = b"\x00\x00" + bytes((flags >> 8, flags & 0xFF)) + response[4:qe]
        self.base = response[qe:]
        self.offsets = tuple(off - qe for off in offsets)
        self.question_end = qe
        self.stored = stored
        self.ttl = math.ceil(lifetime)
        self.expires = stored + lifetime
        self.keepttl = keepttl
        self._stale: Template | None = None
        self.stale_ttl = stale_ttl
        self.threshold = math.ceil(prefetch_percentage / 100 * self.ttl)
        self.hits = 0                       # prefetch popularity (CoreDNS's freq.Freq)
        self.last_hit = -math.inf
        self.failed_until = -math.inf       # a failed refresh: do not retry before this
        self.tpl = self._render(self.ttl)
        self.until = self.expires if keepttl else min(stored + 1.0, self.expires)
        #: The UDP answer memo's stamp of ``tpl`` (made by the handler at a hit; None: none yet).
        self.stamp: Stamp | None = None

    def _render(self, ttl: int) -> Template:
        return Template(self.prefix + patch_ttls(self.base, self.offsets, ttl), self.question_end)

    def age(self, now: float) -> None:
        """Render the TTLs left at ``now`` (whole seconds since storing, never below 0)."""
        sec = max(0, int(now - self.stored))
        self.tpl = self._render(self.ttl if self.keepttl else max(0, self.ttl - sec))
        self.until = self.expires if self.keepttl else min(self.stored + sec + 1, self.expires)
        self.stamp = None  # (the last one's `until` has passed)

    def retire(self) -> None:
        """The entry leaves the cache: its answer is no longer sent from the answer memo."""
        if self.stamp is not None:
            self.stamp.revoke()

    def remaining(self, now: float) -> int:
        """Whole seconds of life left, as CoreDNS's item.ttl (negative once expired)."""
        return self.ttl - int(now - self.stored)

    @property
    def stale(self) -> Template:
        """The response served after expiry, every TTL set to the stale TTL."""
        if self._stale is None:
            self._stale = self._render(self.stale_ttl)
        return self._stale

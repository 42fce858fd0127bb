"""The local handler: localhost names and the loopback reverse zones, answered here.

CoreDNS's rules (plugin/local): the zones ``localhost.``, ``0.in-addr.arpa.``,
``127.in-addr.arpa.`` and ``255.in-addr.arpa.`` are answered by this plugin and never leave
the server. Their apexes have SOA and NS records, ``localhost.`` its loopback addresses, and
``1.0.0.127.in-addr.arpa.`` a PTR to ``localhost.``; other names in them do not exist. Names
under ``.localhost.`` (RFC 6761) and, unless ``localhost_prefix off``, names that begin with
``localhost.`` get the loopback addresses too (and are counted).

The answers are written on the wire: owners are pointers into the question (so they keep the
client's letter case), the names inside the data are written whole in lower case, as CoreDNS
writes them. None is authoritative. They depend on the question alone and are kept as
templates.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, Metric

from interkube.dns.mnemonics import type_text
from interkube.dns.names import ZoneSet, to_wire
from interkube.dns.wire import (
    FLAG_CD,
    FLAG_QR,
    FLAG_RD,
    HEADER_LEN,
    OPCODE_MASK,
    RCODE_NOERROR,
    RCODE_NXDOMAIN,
    Query,
    name_to_text,
    opt_record,
    template_for,
)
from interkube.pkg.metrics import NAMESPACE
from interkube.pkg.shared import Kind
from interkube.plugin.answers import PASS, Entry, TemplateHandler, TemplateTable
from interkube.plugin.handler import passes_later
from interkube.plugin.request import Request
from interkube.plugins.local.parse import LocalConfig

log = logging.getLogger("interkube.plugin.local")

ZONES = ("localhost.", "0.in-addr.arpa.", "127.in-addr.arpa.", "255.in-addr.arpa.")
TTL = 604800
TYPE_A, TYPE_NS, TYPE_SOA, TYPE_PTR, TYPE_AAAA = 1, 2, 6, 12, 28
CLASS_IN = 1

_LOCALHOST = to_wire("localhost.")
_LOCALHOST_LABEL = _LOCALHOST[:-1]              # b"\x09localhost": a first label of `localhost`
_APEXES = frozenset(to_wire(z) for z in ZONES)
_LOOPBACK_PTR = to_wire("1.0.0.127.in-addr.arpa.")
_SOA_RDATA = _LOCALHOST + to_wire("root.localhost.") + struct.pack("!IIIII", 1, 0, 0, 0, TTL)
_HEADER = struct.Struct("!HHHHH")               # flags and the four counts (the ID is the query's)
_RECORD = struct.Struct("!HHIH")                # type, class, TTL, rdata length
#: Answers kept: the zones are small, but any name under .localhost. has its own.
CAPACITY = 10_000


class LocalStats:
    """The count of special localhost names asked (not `localhost.` itself), for the process."""

    __slots__ = ("localhost_requests",)

    def __init__(self) -> None:
        self.localhost_requests = 0

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(f"{NAMESPACE}_local_localhost_requests",
                                     "Counter of special localhost subdomain requests.")
        family.add_metric([], self.localhost_requests)
        yield family


LOCAL_STATS = Kind("local statistics", LocalStats)


def _pointer(offset: int) -> bytes:
    return struct.pack("!H", 0xC000 | offset)


def _record(owner: bytes, rtype: int, rdata: bytes) -> bytes:
    return owner + _RECORD.pack(rtype, CLASS_IN, TTL, len(rdata)) + rdata


def _response(q: Query, rcode: int, answer: list[bytes], authority: list[bytes]) -> bytes:
    wire = q.wire
    flags = FLAG_QR | (q.flags & (OPCODE_MASK | FLAG_RD | FLAG_CD)) | rcode
    opt = opt_record(q.do) if q.edns else b""
    return (wire[:2] + _HEADER.pack(flags, 1, len(answer), len(authority), bool(opt))
            + wire[HEADER_LEN:q.question_end] + b"".join(answer) + b"".join(authority) + opt)


def _address(q: Query, owner: bytes) -> bytes | None:
    """The loopback A or AAAA record for ``q``, or None for another type."""
    if q.qtype == TYPE_A:
        return _record(owner, TYPE_A, b"\x7f\x00\x00\x01")
    if q.qtype == TYPE_AAAA:
        return _record(owner, TYPE_AAAA, b"\x00" * 15 + b"\x01")
    return None


def local_response(q: Query, zone: bytes | None) -> bytes:
    """The answer to ``q``; ``zone`` is the local zone the name is in (wire form), None for a
    special localhost name outside them (`localhost.example.`, with the prefix on)."""
    qname = _pointer(HEADER_LEN)
    name = q.lname
    soa_here = [_record(qname, TYPE_SOA, _SOA_RDATA)]
    if zone is None or (name != zone and zone == _LOCALHOST):
        # Any name under .localhost. (or beginning with localhost.): the loopback addresses.
        rr = _address(q, qname)
        return _response(q, RCODE_NOERROR, [rr] if rr else [], [] if rr else soa_here)
    # The SOA of the zone, owned by the question's last labels (the client's letter case).
    soa_zone = [_record(_pointer(HEADER_LEN + len(name) - len(zone)), TYPE_SOA, _SOA_RDATA)]
    if name in _APEXES:
        if q.qtype in (TYPE_A, TYPE_AAAA):
            rr = _address(q, qname) if name == _LOCALHOST else None
            return _response(q, RCODE_NOERROR, [rr] if rr else [], [] if rr else soa_here)
        if q.qtype == TYPE_SOA:
            return _response(q, RCODE_NOERROR, soa_here, [])
        if q.qtype == TYPE_NS:
            return _response(q, RCODE_NOERROR, [_record(qname, TYPE_NS, _LOCALHOST)], [])
        return _response(q, RCODE_NOERROR, [], soa_here)
    if name == _LOOPBACK_PTR:
        if q.qtype == TYPE_PTR:
            return _response(q, RCODE_NOERROR, [_record(qname, TYPE_PTR, _LOCALHOST)], [])
        return _response(q, RCODE_NOERROR, [], soa_zone)
    return _response(q, RCODE_NXDOMAIN, [], soa_zone)


class LocalHandler(TemplateHandler):
    plugin = "local"

    def __init__(self, cfg: LocalConfig, stats: LocalStats | None = None) -> None:
        self.prefix = cfg.localhost_prefix
        self.stats = stats or LocalStats()
        self.zones = ZoneSet(ZONES)
        self.templates = TemplateTable(CAPACITY, per_query_capacity=CAPACITY)

    @passes_later
    def fast(self, req: Request) -> bytes | None:
        lname = req.query.lname
        if not lname.endswith(_LOCALHOST) and not lname.startswith(_LOCALHOST_LABEL) \
                and self.zones.match(lname) is None:
            return self.next.fast(req)  # not a local name (nearly every query): no template lookup
        return super().fast(req)

    def special(self, lname: bytes) -> bool:
        """A name below `localhost.`, or (with the prefix on) one that begins with `localhost.`."""
        if len(lname) <= len(_LOCALHOST):
            return False
        return lname.endswith(_LOCALHOST) or (self.prefix and lname.startswith(_LOCALHOST_LABEL))

    def template(self, req: Request) -> Entry:
        q = req.query
        special = self.special(q.lname)
        if special:
            self.stats.localhost_requests += 1
            if log.isEnabledFor(logging.DEBUG):
                log.debug("Intercepting localhost query for %s %s, from %s", name_to_text(q.lname),
                          type_text(q.qtype), req.client[0])
        tpl = self.templates.get(q.key)
        if tpl is not None:
            return tpl
        if special:
            zone = _LOCALHOST if q.lname.endswith(_LOCALHOST) else None
        else:
            text = self.zones.match(q.lname)
            if text is None:
                return PASS
            zone = to_wire(text)
        tpl = template_for(local_response(q, zone), q)
        self.templates.put(q.key, tpl)
        return tpl

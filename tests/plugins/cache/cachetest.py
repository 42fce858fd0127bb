"""Helpers for the cache tests: a controllable clock, queries, responses and a scripted next handler."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Sequence

import dns.flags
import dns.message
import dns.rcode
import dns.rrset

from interkube.dns.wire import parse_query
from interkube.errors import UpstreamError
from interkube.plugin.handler import Handler, link
from interkube.plugin.request import Request
from interkube.plugins.cache.handler import CacheHandler
from interkube.plugins.cache.parse import parse
from testkit.corefile import directive

CLIENT = ("127.0.0.1", 53000)
SOA = "ns.example.org. hostmaster.example.org. 1 7200 3600 86400 {minimum}"

Record = tuple[str, int, str, str]  # owner, ttl, type, rdata


class Clock:
    """Stands in for time.monotonic: moves only when a test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def query(name: str = "www.example.org.", rdtype: str = "A", *, qid: int = 1, edns: bool = True,
          do: bool = False) -> bytes:
    msg = dns.message.make_query(name, rdtype, use_edns=0 if edns else False, want_dnssec=do)
    msg.id = qid
    return msg.to_wire()


def request(wire: bytes, proto: str = "udp") -> Request:
    q = parse_query(wire)
    assert q is not None
    return Request(wire, q, CLIENT, proto)


def respond(query_wire: bytes, answer: Sequence[Record] = (), *, authority: Sequence[Record] = (),
            additional: Sequence[Record] = (), rcode: dns.rcode.Rcode = dns.rcode.NOERROR, aa: bool = True,
            tc: bool = False) -> bytes:
    """The response an upstream would send to ``query_wire`` (EDNS echoed as dnspython does)."""
    q = dns.message.from_wire(query_wire)
    resp = dns.message.make_response(q)
    if q.ednsflags & dns.flags.DO:
        resp.want_dnssec(True)  # make_response does not echo DO; a validating upstream would
    for section, records in ((resp.answer, answer), (resp.authority, authority),
                             (resp.additional, additional)):
        for owner, ttl, rdtype, rdata in records:
            section.append(dns.rrset.from_text(owner, ttl, "IN", rdtype, rdata))
    resp.set_rcode(rcode)
    if aa:
        resp.flags |= dns.flags.AA
    if tc:
        resp.flags |= dns.flags.TC
    return resp.to_wire()


def a_record(ttl: int = 300, name: str = "www.example.org.", address: str = "192.0.2.1") -> Callable[[bytes], bytes]:
    """An answering function: one A record with ``ttl`` for whatever was asked."""
    def answer(wire: bytes) -> bytes:
        q = dns.message.from_wire(wire)
        return respond(wire, [(q.question[0].name.to_text(), ttl, "A", address)])
    return answer


def nx_or_a(wire: bytes) -> bytes:
    """An answering function: NXDOMAIN (with SOA) for names whose first label starts with
    "nx", one A record with TTL 300 for the others."""
    name = dns.message.from_wire(wire).question[0].name.to_text()
    if name.startswith("nx"):
        return respond(wire, authority=[("example.org.", 300, "SOA", SOA.format(minimum=300))],
                       rcode=dns.rcode.NXDOMAIN)
    return respond(wire, [(name, 300, "A", "192.0.2.1")])


def raw_query(name: str, qid: int = 1) -> bytes:
    """A query for `name IN A` with EDNS, encoded by hand: dnspython is too slow for 100k names."""
    qname = b"".join(bytes((len(label),)) + label.encode() for label in name.rstrip(".").split(".")) + b"\0"
    return (struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 1) + qname + b"\x00\x01\x00\x01"
            + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00")


def raw_a_answer(ttl: int = 300) -> Callable[[bytes], bytes]:
    """An answering function for raw_query's queries: one A record, its owner a pointer."""
    record = b"\xc0\x0c\x00\x01\x00\x01" + struct.pack("!IH", ttl, 4) + b"\xc0\x00\x02\x01"

    def answer(wire: bytes) -> bytes:
        opt = wire[-11:]
        question = wire[12:-11]
        return wire[:2] + struct.pack("!HHHHH", 0x8580, 1, 1, 0, 1) + question + record + opt
    return answer


def raw_nxdomain(minimum: int = 300) -> Callable[[bytes], bytes]:
    """Like raw_a_answer, but NXDOMAIN with an SOA (root names, MINIMUM ``minimum``)."""
    soa = (b"\xc0\x0c\x00\x06\x00\x01" + struct.pack("!IH", 3600, 22) + b"\x00\x00"
           + struct.pack("!IIIII", 1, 7200, 3600, 86400, minimum))

    def answer(wire: bytes) -> bytes:
        return wire[:2] + struct.pack("!HHHHH", 0x8583, 1, 0, 1, 1) + wire[12:-11] + soa + wire[-11:]
    return answer


class Scripted(Handler):
    """The handler after the cache: answers with ``answer(query_wire)`` and counts the calls.

    ``on_fast`` answers on the fast path (like hosts or file); otherwise only ``serve`` answers
    (like forward). ``error`` makes serve raise it; ``gate`` makes serve wait for it.
    """

    plugin = "scripted"

    def __init__(self, answer: Callable[[bytes], bytes], *, on_fast: bool = True) -> None:
        self.answer = answer
        self.on_fast = on_fast
        self.fast_calls = 0
        self.serve_calls = 0
        self.error: Exception | None = None
        self.gate: asyncio.Event | None = None

    def fast(self, req: Request) -> bytes | None:
        if not self.on_fast:
            return None
        self.fast_calls += 1
        return self.answer(req.wire)

    async def serve(self, req: Request) -> bytes:
        self.serve_calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return self.answer(req.wire)

    @property
    def calls(self) -> int:
        return self.fast_calls + self.serve_calls


def make_cache(text: str, nxt: Handler, zones: Sequence[str] = (".",), *,
               server: str = "dns://:53") -> tuple[CacheHandler, Clock]:
    """A cache parsed from ``text`` in front of ``nxt``, on a clock the test moves."""
    cfg = parse(directive(text))
    clock = Clock()
    cache = CacheHandler(cfg, cfg.zones or zones, server=server, clock=clock)
    link([cache, nxt])
    return cache, clock


def upstream_down() -> UpstreamError:
    return UpstreamError("127.0.0.1:53", "connection refused")


def ttls(wire: bytes) -> list[int]:
    """Every record's TTL in a response, section by section (OPT is not a record here)."""
    msg = dns.message.from_wire(wire)
    return [rrset.ttl for section in (msg.answer, msg.authority, msg.additional) for rrset in section]


async def refreshes_done(cache: CacheHandler) -> None:
    """Wait for every background refresh the cache has in flight."""
    await asyncio.gather(*cache.refreshing.values(), return_exceptions=True)

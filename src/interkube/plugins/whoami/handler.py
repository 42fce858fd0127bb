"""The whoami handler: an empty answer whose additional section tells the client about itself.

The response depends on the client (its address and port), not only on the question, so it is
written on the wire for each query rather than kept as a template: a few bytes around the
query's own question, with every owner name a pointer to it (the client's letter case).
"""

from __future__ import annotations

import ipaddress
import struct

from interkube.dns.wire import FLAG_AA, FLAG_CD, FLAG_QR, FLAG_RD, HEADER_LEN, OPCODE_MASK, opt_record
from interkube.plugin.handler import Handler
from interkube.plugin.request import Request

_TYPE_A, _TYPE_AAAA, _TYPE_SRV = 1, 28, 33
_HEADER = struct.Struct("!HHHHH")      # flags and the four counts (the ID is the query's)
_RECORD = struct.Struct("!HHIH")       # type, class, TTL, rdata length
_SRV_HEAD = struct.Struct("!HHH")      # priority, weight, port
#: A compression pointer to the question name, which starts right after the header.
_TO_QNAME = struct.pack("!H", 0xC000 | HEADER_LEN)


def client_address(client: tuple[object, ...]) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The client's address; an IPv4 client of a dual-stack socket as its IPv4 address (CoreDNS
    answers an A record for it too)."""
    addr = ipaddress.ip_address(str(client[0]).split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def whoami_response(req: Request) -> bytes:
    """The response to ``req``: no answer; the client's A (or AAAA) record and an SRV record
    ``_<proto>.<qname>`` holding its port, both with TTL 0, in the additional section."""
    q = req.query
    wire = req.wire
    addr = client_address(req.client)
    rtype = _TYPE_A if addr.version == 4 else _TYPE_AAAA
    proto = b"udp" if req.proto == "udp" else b"tcp"  # DNS over TLS is TCP, as CoreDNS says
    port = int(req.client[1]) if len(req.client) > 1 else 0
    packed = addr.packed
    address_rr = _TO_QNAME + _RECORD.pack(rtype, q.qclass, 0, len(packed)) + packed
    # `_udp.` under the root is written whole; otherwise a label in front of the question name.
    srv_owner = b"\x04_" + proto + (b"\x00" if q.lname == b"\x00" else _TO_QNAME)
    srv_rr = srv_owner + _RECORD.pack(_TYPE_SRV, q.qclass, 0, 7) + _SRV_HEAD.pack(0, 0, port) + b"\x00"
    flags = FLAG_QR | FLAG_AA | (q.flags & (OPCODE_MASK | FLAG_RD | FLAG_CD))
    opt = opt_record(q.do) if q.edns else b""
    return (wire[:2] + _HEADER.pack(flags, 1, 0, 0, 2 + bool(opt))
            + wire[HEADER_LEN:q.question_end] + address_rr + srv_rr + opt)


class WhoamiHandler(Handler):
    """Answers every query that reaches it; nothing after it in the chain is asked."""

    plugin = "whoami"

    def fast(self, req: Request) -> bytes:
        req.answered_by = "whoami"
        return whoami_response(req)

    async def serve(self, req: Request) -> bytes:
        return self.fast(req)

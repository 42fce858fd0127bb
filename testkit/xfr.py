"""Zone transfers and NOTIFY for tests: an AXFR/IXFR client that keeps every message as sent, and
a loopback listener that records the NOTIFY messages a primary sends.

    got = await transfer(port, "example.org")              # AXFR over TCP from 127.0.0.1
    got = await transfer(port, "example.org", "IXFR", serial=5, source="127.0.0.2")
    assert got.rcode == "NOERROR" and got.records[0] == got.records[-1]   # SOA ... SOA

    async with NotifyListener() as secondary:              # `to 127.0.0.1:{secondary.port}`
        await until(lambda: secondary.received, "a NOTIFY")
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.rrset

from testkit.servers import LOOPBACK, free_port

#: A zone file for transfers (its origin example.org.): records at the apex, a delegation with
#: glue, a wildcard, a CNAME, an SRV, names in capitals (17 records with the closing SOA).
EXAMPLE_ZONE = """\
$TTL 3600
@ IN SOA ns1 hostmaster 2024010101 7200 3600 1209600 300
@ IN NS ns1
@ IN NS ns2.other.test.
@ IN A 192.0.2.10
@ IN MX 10 Mail
@ IN TXT "v=spf1 -all"
ns1 IN A 192.0.2.53
www 300 IN A 192.0.2.1
www 300 IN AAAA 2001:db8::1
Mail IN A 192.0.2.25
Alias IN CNAME WWW
_http._tcp IN SRV 10 5 80 www
sub IN NS ns.sub
ns.sub IN A 192.0.2.99
*.wild IN TXT "wild" "card"
a.b.c IN A 192.0.2.7
"""
EXAMPLE_SERIAL = 2024010101


@dataclass
class Transfer:
    """What a server sent for one transfer query: each message, parsed (one record per RRset,
    in the order sent), and its bytes."""

    messages: list[dns.message.Message] = field(default_factory=list)
    wires: list[bytes] = field(default_factory=list)

    @property
    def rcode(self) -> str:
        return dns.rcode.to_text(self.messages[0].rcode())

    @property
    def records(self) -> list[dns.rrset.RRset]:
        """The answer records of every message, in order (each a one-record RRset)."""
        return [rrset for m in self.messages for rrset in m.answer]

    def texts(self) -> list[str]:
        """Each record as text (``name TTL class type rdata``), in order."""
        return [rrset.to_text() for rrset in self.records]

    @property
    def complete(self) -> bool:
        """Ended as a transfer ends: an error, the SOA alone (IXFR up to date), or the SOA again."""
        records = self.records
        if not self.messages or self.messages[0].rcode() != dns.rcode.NOERROR:
            return bool(self.messages)
        if len(records) == 1 and records[0].rdtype == dns.rdatatype.SOA:
            return True
        return (len(records) >= 2 and records[0].rdtype == dns.rdatatype.SOA
                and sum(1 for r in records if r.rdtype == dns.rdatatype.SOA) >= 2
                and records[-1].rdtype == dns.rdatatype.SOA)


def transfer_query(zone: str, rdtype: str = "AXFR", *, serial: int | None = None, edns: bool = False,
                   do: bool = False, rdclass: str = "IN") -> dns.message.Message:
    """An AXFR, or an IXFR naming ``serial`` in its authority section (None: none, malformed)."""
    q = dns.message.make_query(zone, rdtype, rdclass=rdclass, use_edns=0 if edns or do else None,
                               want_dnssec=do)
    if rdtype == "IXFR" and serial is not None:
        q.authority.append(dns.rrset.from_text(dns.name.from_text(zone), 0, rdclass, "SOA", f". . {serial} 0 0 0 0"))
    return q


async def transfer(port: int, zone: str, rdtype: str = "AXFR", *, host: str = LOOPBACK,
                   source: str | None = None, serial: int | None = None, edns: bool = False,
                   do: bool = False, rdclass: str = "IN", query: dns.message.Message | None = None,
                   ssl_context: ssl.SSLContext | None = None, server_hostname: str | None = None,
                   timeout: float = 10.0) -> Transfer:
    """Ask ``zone`` for a transfer over TCP (TLS with ``ssl_context``) from ``source`` (a local
    127.x address, to be another client) and read until the transfer is complete, the server
    closes, or it is silent for ``timeout`` seconds (then what came is returned)."""
    q = query if query is not None else transfer_query(zone, rdtype, serial=serial, edns=edns, do=do,
                                                       rdclass=rdclass)
    local = (source, 0) if source is not None else None
    reader, writer = await asyncio.open_connection(host, port, local_addr=local, ssl=ssl_context,
                                                   server_hostname=server_hostname)
    got = Transfer()
    try:
        wire = q.to_wire()
        writer.write(struct.pack("!H", len(wire)) + wire)
        await writer.drain()
        while not got.complete:
            try:
                head = await asyncio.wait_for(reader.readexactly(2), timeout)
                body = await asyncio.wait_for(reader.readexactly(struct.unpack("!H", head)[0]), timeout)
            except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                break
            got.wires.append(body)
            got.messages.append(dns.message.from_wire(body, one_rr_per_rrset=True))
    finally:
        writer.close()
    return got


class NotifyListener(asyncio.DatagramProtocol):
    """A secondary on loopback that records each NOTIFY (message, sender) and answers it with
    ``rcode`` (NOERROR: accepted)."""

    def __init__(self, host: str = LOOPBACK, port: int | None = None,
                 rcode: dns.rcode.Rcode = dns.rcode.NOERROR) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.rcode = rcode
        self.received: list[tuple[dns.message.Message, Any]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def datagram_received(self, data: bytes, addr: Any) -> None:
        message = dns.message.from_wire(data)
        self.received.append((message, addr))
        reply = dns.message.make_response(message)
        reply.set_rcode(self.rcode)
        assert self.transport is not None
        self.transport.sendto(reply.to_wire(), addr)

    def notified(self, zone: str) -> list[dns.message.Message]:
        """The NOTIFY messages received for ``zone``."""
        return [m for m, _ in self.received if m.opcode() == dns.opcode.NOTIFY
                and m.question and m.question[0].name.to_text().lower() == zone.lower()]

    async def __aenter__(self) -> NotifyListener:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=(self.host, self.port),
            family=socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self.transport is not None:
            self.transport.close()


def is_notify(message: dns.message.Message, zone: str) -> bool:
    """CoreDNS's NOTIFY: opcode NOTIFY, AA, the zone's SOA as the question, no records."""
    return (message.opcode() == dns.opcode.NOTIFY and bool(message.flags & dns.flags.AA)
            and not message.flags & dns.flags.QR and len(message.question) == 1
            and message.question[0].name.to_text().lower() == zone.lower()
            and message.question[0].rdtype == dns.rdatatype.SOA
            and not message.answer and not message.authority and not message.additional)


__all__ = ["EXAMPLE_SERIAL", "EXAMPLE_ZONE", "NotifyListener", "Transfer", "is_notify", "transfer",
           "transfer_query"]

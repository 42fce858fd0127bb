"""The messages of a zone transfer, as wire bytes (RFC 5936). Pure, no I/O.

Each message answers the client's query: its ID, its question as the client wrote it, QR and AA
set, the opcode, RD and CD echoed, and an OPT record when the query had one (as CoreDNS sends
them). The records go uncompressed, as CoreDNS's do, so that a message's size is known as
records are added and encoding one costs no lookups; a message is closed when the next record
would take its records past the budget.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

import dns.rrset

from interkube.dns.wire import FLAG_AA, FLAG_CD, FLAG_QR, FLAG_RD, HEADER_LEN, OPCODE_MASK, Query, opt_record
from interkube.plugin.transfer import ZoneCopy

#: Bytes of records per message. CoreDNS fills its messages to about 63,000 bytes; smaller ones
#: keep the work done between two writes (making a cluster's records, encoding them) to a few
#: milliseconds, so that a transfer of a large zone never holds the event loop for long.
MESSAGE_BUDGET = 16_000

_COUNTS = struct.Struct("!HHHH")
_RR = struct.Struct("!HHIH")      # type, class, TTL, rdata length


class Envelope:
    """Records packed into the messages of one answer."""

    def __init__(self, query: Query, *, authoritative: bool = True, budget: int = MESSAGE_BUDGET) -> None:
        flags = FLAG_QR | (FLAG_AA if authoritative else 0) | (query.flags & (OPCODE_MASK | FLAG_RD | FLAG_CD))
        self._head = query.wire[:2] + flags.to_bytes(2, "big")
        self._question = query.wire[HEADER_LEN:query.question_end]
        self._opt = opt_record(query.do) if query.edns else b""
        self.budget = budget
        self._records: list[bytes] = []
        self._size = 0
        #: Records in the messages made so far.
        self.records = 0

    def add(self, rrset: dns.rrset.RRset) -> Iterator[bytes]:
        """Add an RRset's records; yields each message they filled."""
        owner = rrset.name.to_wire()
        assert owner is not None  # an absolute name always has a wire form
        rdtype, rdclass, ttl = int(rrset.rdtype), int(rrset.rdclass), int(rrset.ttl)
        for rdata in rrset:
            data = rdata.to_wire()
            record = owner + _RR.pack(rdtype, rdclass, ttl, len(data)) + data
            if self._records and self._size + len(record) > self.budget:
                yield self.message()
            self._records.append(record)
            self._size += len(record)

    def message(self) -> bytes:
        """A message of the records added since the last one (maybe none)."""
        records, self._records, self._size = self._records, [], 0
        self.records += len(records)
        counts = _COUNTS.pack(1, len(records), 0, 1 if self._opt else 0)
        return b"".join((self._head, counts, self._question, *records, self._opt))


def transfer_messages(envelope: Envelope, copy: ZoneCopy) -> Iterator[bytes]:
    """The messages of a full transfer of ``copy`` (AXFR, or IXFR answered in full) in
    ``envelope``: the SOA, every other record in the source's order, the SOA again. Lazy: a
    message's records are made and encoded when it is asked for."""
    yield from envelope.add(copy.soa)
    for batch in copy.records:
        for rrset in batch:
            yield from envelope.add(rrset)
    yield from envelope.add(copy.soa)
    yield envelope.message()


def single_message(query: Query, rrsets: Iterable[dns.rrset.RRset], *, authoritative: bool) -> bytes:
    """One message holding ``rrsets`` (the SOA alone to an IXFR whose serial is current)."""
    envelope = Envelope(query, authoritative=authoritative, budget=65_000)
    for rrset in rrsets:
        for _ in envelope.add(rrset):
            raise ValueError("records do not fit one message")
    return envelope.message()

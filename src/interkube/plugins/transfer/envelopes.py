"""The messages of a zone transfer, as wire bytes (RFC 5936). Pure, no I/O.

Each message answers the client's query: its ID, its question as the client wrote it, QR and AA
set, the opcode, RD and CD echoed, and an OPT record when the query had one (as CoreDNS sends
them). Records go uncompressed and fill a message as CoreDNS fills its envelopes: a message is
closed when the next record would take its records past MESSAGE_BUDGET bytes.

Making the records of a large zone (a cluster's Services become record sets here) and encoding
them is most of a transfer's work. So that it never holds the event loop for long, the parts of
a transfer come as messages with pause points between them (``None``, every PAUSE_RECORDS
records): whoever drives it lets the loop run there (see the handler's ``_next``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

import dns.name
import dns.rdataset

from interkube.dns.wire import FLAG_AA, FLAG_CD, FLAG_QR, FLAG_RD, HEADER_LEN, OPCODE_MASK, Query, opt_record
from interkube.plugin.transfer import Owned, ZoneCopy

#: Bytes of records per message: CoreDNS's (63,000, under the 64 KiB a TCP message may hold).
MESSAGE_BUDGET = 63_000
#: Records made and encoded between two pause points: a millisecond or so of work.
PAUSE_RECORDS = 64

_COUNTS = struct.Struct("!HHHH")
_RR = struct.Struct("!HHIH")      # type, class, TTL, rdata length

#: A part of a transfer: a message, or None where the loop may run before the next part is made.
Part = bytes | None


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
        #: Records added so far (the ones in the messages made, and those waiting for one).
        self.added = 0

    def add(self, name: dns.name.Name, rdataset: dns.rdataset.Rdataset) -> Iterator[Part]:
        """Add the records of ``rdataset`` owned by ``name``; yields each message they filled,
        and a pause point every PAUSE_RECORDS records."""
        owner = name.to_wire()
        assert owner is not None  # an absolute name always has a wire form
        fixed = (int(rdataset.rdtype), int(rdataset.rdclass), int(rdataset.ttl))
        for rdata in rdataset:
            data = rdata.to_wire()
            record = owner + _RR.pack(*fixed, len(data)) + data
            if self._records and self._size + len(record) > self.budget:
                yield self.message()
            self._records.append(record)
            self._size += len(record)
            self.added += 1
            if self.added % PAUSE_RECORDS == 0:
                yield None

    def message(self) -> bytes:
        """A message of the records added since the last one (maybe none)."""
        records, self._records, self._size = self._records, [], 0
        counts = _COUNTS.pack(1, len(records), 0, 1 if self._opt else 0)
        return b"".join((self._head, counts, self._question, *records, self._opt))


def transfer_messages(envelope: Envelope, copy: ZoneCopy) -> Iterator[Part]:
    """The parts of a full transfer of ``copy`` (AXFR, or IXFR answered in full) in
    ``envelope``: the SOA, every other record in the source's order, the SOA again. Lazy: the
    records are made and encoded as the parts are asked for."""
    yield from envelope.add(copy.soa.name, copy.soa)
    for batch in copy.records:
        for name, rdataset in batch:
            yield from envelope.add(name, rdataset)
    yield from envelope.add(copy.soa.name, copy.soa)
    yield envelope.message()


def single_message(query: Query, records: Iterable[Owned], *, authoritative: bool) -> bytes:
    """One message holding ``records`` (the SOA alone to an IXFR whose serial is current)."""
    envelope = Envelope(query, authoritative=authoritative)
    for name, rdataset in records:
        for part in envelope.add(name, rdataset):
            if part is not None:
                raise ValueError("records do not fit one message")
    return envelope.message()

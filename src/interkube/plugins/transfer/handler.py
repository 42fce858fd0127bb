"""The transfer handler: AXFR, and IXFR answered in full, over TCP; NOTIFY when a zone changes.

As CoreDNS's *transfer*: a question of another type goes on; a transfer asked over UDP is
REFUSED; one for a name no stanza covers goes on (the plugin that holds the name refuses it); a
client whose address no `to` lists gets REFUSED; an IXFR without exactly one SOA in its
authority section gets SERVFAIL. Otherwise the first handler after this one that holds a zone of
exactly the question's name (a :class:`~interkube.plugin.transfer.ZoneSource`) copies it: an
IXFR whose serial is the zone's gets that SOA alone (no journal: nothing smaller than the whole
zone can be sent otherwise), every other transfer gets the whole zone, streamed in several
messages (see :mod:`.envelopes`), the loop running between every few records made. No source
for the name: the question goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Iterator

import dns.message
import dns.rdataclass
import dns.rdatatype

from interkube.dns.names import ZoneSet
from interkube.dns.wire import RCODE_REFUSED, RCODE_SERVFAIL, ZONE_TRANSFERS, error_response
from interkube.plugin.handler import SLOW, Handler, Streamed, passes_later
from interkube.plugin.request import Request
from interkube.plugin.transfer import ZoneCopy, ZoneSource
from interkube.plugins.transfer.envelopes import Envelope, Part, single_message, transfer_messages
from interkube.plugins.transfer.notify import Notifier
from interkube.plugins.transfer.parse import Address, TransferConfig

log = logging.getLogger("interkube.plugin.transfer")

#: The transports a transfer is answered over: several messages on one connection.
STREAMS = ("tcp", "tls")


class Stanza:
    """One `transfer` directive: its zones, who may transfer them, and its NOTIFY rounds."""

    def __init__(self, cfg: TransferConfig, zones: tuple[str, ...], *, notify: bool = True) -> None:
        self.cfg = cfg
        self.zones = zones
        self.allowed: frozenset[Address] = frozenset(s.address for s in cfg.to)
        #: NOTIFY goes to the `to` addresses (none when ``notify`` is off: a worker other than
        #: the first of a multi-worker server).
        self.notifier = Notifier(cfg.to if notify else (), cfg.source)

    def allows(self, client: Address) -> bool:
        return self.cfg.anyone or client in self.allowed


class TransferHandler(Handler):
    plugin = "transfer"

    def __init__(self) -> None:
        self.stanzas: list[Stanza] = []
        #: Each zone's stanza: the first to name it (as CoreDNS's longest match).
        self._by_zone: dict[str, Stanza] = {}
        self._zones = ZoneSet(())
        #: The handlers after this one that can copy zones, in chain order (found at start).
        self.sources: list[ZoneSource] = []
        self.stopped = False

    def add(self, stanza: Stanza) -> None:
        self.stanzas.append(stanza)
        for zone in stanza.zones:
            self._by_zone.setdefault(zone, stanza)
        self._zones = ZoneSet(self._by_zone)

    def stanza_for(self, name: str) -> Stanza | None:
        """The stanza of the longest zone holding ``name`` (text), if any."""
        zone = self._zones.match_text(name)
        return None if zone is None else self._by_zone[zone]

    # --- answering ---------------------------------------------------------------------------

    @passes_later
    def fast(self, req: Request) -> bytes | None:
        if req.query.qtype in ZONE_TRANSFERS:
            return SLOW
        return self.next.fast(req)

    async def serve(self, req: Request) -> bytes:
        q = req.query
        if q.qtype not in ZONE_TRANSFERS or q.qclass != dns.rdataclass.IN:
            return await self.next.serve(req)  # (sources hold IN data; CoreDNS refuses other classes)
        if req.proto not in STREAMS or req.route.server.startswith("https://"):
            return error_response(req.wire, RCODE_REFUSED, q)
        zone = req.qname.to_text().lower()
        stanza = self.stanza_for(zone)
        if stanza is None:
            return await self.next.serve(req)
        if not stanza.allows(req.client_address):
            req.answered_by = self.plugin
            return error_response(req.wire, RCODE_REFUSED, q)
        serial = None
        if q.qtype == dns.rdatatype.IXFR:
            serial = client_serial(req.message)
            if serial is None:
                req.answered_by = self.plugin
                return error_response(req.wire, RCODE_SERVFAIL, q)
        copy = self.copy(zone)
        if copy is None:
            return await self.next.serve(req)
        req.answered_by = self.plugin
        if serial is not None and serial == copy.serial:
            log.info("Outgoing noop, incremental transfer for up to date zone %s to %s for %d SOA serial",
                     zone, req.client_address, copy.serial)
            return single_message(q, [(copy.soa.name, copy.soa)], authoritative=False)
        envelope = Envelope(q)
        parts = transfer_messages(envelope, copy)
        first = await _next(parts)
        assert first is not None  # a transfer has a message at least
        return Streamed(first, self._rest(parts, envelope, zone, req.client_address, copy.serial))

    def copy(self, zone: str) -> ZoneCopy | None:
        """``zone`` from the first source that holds it."""
        for source in self.sources:
            copy = source.zone_copy(zone)
            if copy is not None:
                return copy
        return None

    async def _rest(self, parts: Iterator[Part], envelope: Envelope, zone: str, client: Address,
                    serial: int) -> AsyncGenerator[bytes, None]:
        """The messages after the first; each is made when the listener asks for it."""
        whole = False
        try:
            while (message := await _next(parts)) is not None:
                yield message
            whole = True
        finally:
            if whole:
                log.info("Outgoing transfer of %d records of zone %s to %s for %d SOA serial",
                         envelope.added, zone, client, serial)
            else:
                log.info("Outgoing transfer of zone %s to %s for %d SOA serial ended after %d records: "
                         "the connection closed", zone, client, serial, envelope.added)

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Find the sources among the handlers after this one, and listen to their changes."""
        self.sources = list(zone_sources(self))
        for source in self.sources:
            source.watch_zones(self.changed)

    async def serving(self) -> None:
        """The configuration answers: NOTIFY for every zone that can be transferred (as CoreDNS's
        file does at startup; a secondary then checks the serial it holds)."""
        for source in self.sources:
            for zone in source.transfer_zones():
                if source.zone_copy(zone) is not None:
                    self.changed(zone)

    def changed(self, zone: str) -> None:
        if self.stopped:
            return
        stanza = self.stanza_for(zone)
        if stanza is not None:
            stanza.notifier.notify(zone)

    async def stop(self) -> None:
        self.stopped = True
        for stanza in self.stanzas:
            await stanza.notifier.stop()


async def _next(parts: Iterator[Part]) -> bytes | None:
    """The next message of a transfer (None: none left), letting the loop run at each pause."""
    for part in parts:
        if part is not None:
            return part
        await asyncio.sleep(0)
    return None


def zone_sources(handler: Handler) -> Iterator[ZoneSource]:
    """The handlers after ``handler`` in its chain that can copy zones, in order."""
    h: Handler | None = getattr(handler, "next", None)
    while h is not None:
        if isinstance(h, ZoneSource):
            yield h
        h = getattr(h, "next", None)


def client_serial(query: dns.message.Message) -> int | None:
    """The serial an IXFR says the client holds: its authority section's one SOA record."""
    if len(query.authority) != 1:
        return None
    rrset = query.authority[0]
    if rrset.rdtype != dns.rdatatype.SOA or len(rrset) != 1:
        return None
    return int(rrset[0].serial)

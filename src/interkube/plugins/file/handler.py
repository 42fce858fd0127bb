"""The file handler: authoritative answers from zone files, served from pre-encoded templates."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from interkube.dns.message import make_response, render
from interkube.dns.names import ZoneSet
from interkube.dns.wire import RCODE_REFUSED, error_response
from interkube.pkg.filewatch import WatchedFile
from interkube.pkg.ticker import Ticker
from interkube.plugin.answers import PASS, MemoryHandler, Synthesized, WireAnswer, bare_answer, negative_answer
from interkube.plugin.handler import Terminal
from interkube.plugin.request import Request
from interkube.plugin.transfer import ZoneCopy, ZoneListener
from interkube.plugins.file.lookup import Outcome, lookup
from interkube.plugins.file.negative import Verdict
from interkube.plugins.file.parse import FileConfig
from interkube.plugins.file.xfr import zone_copy
from interkube.plugins.file.zone import ZoneData, ZoneFileInvalid, load_zone

log = logging.getLogger("interkube.plugin.file")

Zones = Mapping[str, ZoneData]  # zone (lower-case, fully qualified text) -> its data


def zone_parser(path: str, zones: Sequence[str]) -> Callable[[bytes], Zones]:
    """Bytes of a zone file -> the zones it is served as, each parsed with its own origin."""
    origins = tuple(dns.name.from_text(z).to_text().lower() for z in zones)

    def parse(raw: bytes) -> Zones:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[:exc.start].count(b"\n") + 1
            raise ZoneFileInvalid(f"{path}:{line}: not UTF-8 text") from exc
        out = {}
        for origin in origins:
            try:
                out[origin] = load_zone(text, origin, path)
            except ZoneFileInvalid as exc:
                raise ZoneFileInvalid(f"zone {origin}: {exc}") from exc
        return MappingProxyType(out)

    return parse


class Refuse(Terminal):
    """Answers REFUSED: what CoreDNS's *file* gives for names outside its zones when no
    plugin follows it (rather than the SERVFAIL at the end of every other chain)."""

    plugin = "file"

    def fast(self, req: Request) -> bytes:
        return error_response(req.wire, RCODE_REFUSED, req.query)


#: Zone transfers need the *transfer* plugin; without it CoreDNS's *file* refuses them.
_TRANSFERS = (dns.rdatatype.AXFR, dns.rdatatype.IXFR)


class FileHandler(MemoryHandler[Zones]):
    plugin = "file"
    # Answers come from a generation's templates; a reload that takes a zone swaps the
    # generation, retiring its table (MemoryHandler.swap): the answer memo lets go at once.
    memo_safe = True

    def __init__(self, cfg: FileConfig, watched: WatchedFile[Zones], data: Zones) -> None:
        super().__init__(ZoneSet(data), data)
        self.cfg = cfg
        self.watched = watched
        self.ticker = Ticker(cfg.reload, self.check, log)
        #: Told of each zone a reload changed (the transfer plugin's NOTIFY).
        self.zone_listeners: list[ZoneListener] = []

    def wire_answer(self, req: Request, data: Zones, zone: str) -> WireAnswer:
        """Transfers refused, NXDOMAIN and NODATA, written on the wire when the zone's
        NegativeIndex tells them from the question's bytes (what a flood of random names asks)."""
        q = req.query
        if q.qclass != dns.rdataclass.IN:
            return PASS
        if q.qtype in _TRANSFERS:
            return bare_answer(q, RCODE_REFUSED)
        z = data[zone]
        verdict = z.negative.verdict(q.lname, q.qtype)
        if verdict is None:
            return None
        if verdict is Verdict.NXDOMAIN and self.cfg.fallthrough.applies(q.lname):
            return PASS
        return negative_answer(q, z.negative.soa, verdict is Verdict.NXDOMAIN)

    def build(self, req: Request, data: Zones, zone: str) -> bytes | None:
        q = req.query
        if q.qclass != dns.rdataclass.IN:
            return None
        if q.qtype in _TRANSFERS:
            response = make_response(req.message, authoritative=False)
            response.set_rcode(dns.rcode.REFUSED)
            return render(response)
        result = lookup(data[zone], req.qname, q.qtype)
        if result.outcome is Outcome.NXDOMAIN and self.cfg.fallthrough.applies(q.lname):
            return None
        if result.outcome in (Outcome.NXDOMAIN, Outcome.NODATA):
            wire = negative_answer(q, data[zone].negative.soa, result.outcome is Outcome.NXDOMAIN)
            if wire is not None:
                return wire
        response = make_response(req.message, authoritative=result.outcome is not Outcome.REFERRAL)
        response.answer.extend(result.answer)
        response.authority.extend(result.authority)
        response.additional.extend(result.additional)
        if result.outcome is Outcome.NXDOMAIN:
            response.set_rcode(dns.rcode.NXDOMAIN)
        wire = render(response)
        return Synthesized(wire) if result.synthesized else wire

    # -- reloading --------------------------------------------------------------------------

    async def start(self) -> None:
        # The chain is linked by now: the last plugin refuses what is not its own, as CoreDNS.
        if isinstance(self.next, Terminal):
            self.next = Refuse()
        self.ticker.start()

    async def stop(self) -> None:
        await self.ticker.stop()

    async def check(self) -> None:
        """Re-read the file when it changed; take each zone whose SOA serial changed."""
        fresh = await self.watched.poll()
        if fresh is None:
            return
        updated = dict(self.data)
        changed = False
        for zone, data in fresh.items():
            # As CoreDNS: an edit that keeps the serial is not served until the serial moves.
            if data.serial != updated[zone].serial:
                updated[zone] = data
                changed = True
                log.info("reloaded zone %s from %s with SOA serial %d", zone, self.watched.path,
                         data.serial)
        if changed:
            self.swap(MappingProxyType(updated))
            for zone in fresh:
                if updated[zone] is fresh[zone]:
                    for listener in self.zone_listeners:
                        listener(zone)

    # -- zone transfers (interkube.plugin.transfer.ZoneSource) ---------------------------------

    def transfer_zones(self) -> tuple[str, ...]:
        return tuple(self.data)

    def zone_copy(self, zone: str) -> ZoneCopy | None:
        data = self.data.get(zone)
        return None if data is None else zone_copy(data)

    def watch_zones(self, listener: ZoneListener) -> None:
        self.zone_listeners.append(listener)

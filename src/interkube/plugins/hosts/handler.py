"""The hosts handler: A, AAAA and PTR from hosts-file entries, as CoreDNS's plugin/hosts."""

from __future__ import annotations

import ipaddress
import logging
import struct
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from interkube.dns.message import make_response, render
from interkube.dns.names import ZoneSet, to_wire
from interkube.dns.negative import OPTION_PADDING
from interkube.dns.wire import FLAG_AA, FLAG_QR, FLAG_RD, HEADER_LEN, RCODE_SERVFAIL, Query, has_option, opt_record
from interkube.pkg.filewatch import WatchedFile
from interkube.pkg.metrics import NAMESPACE
from interkube.pkg.ticker import Ticker
from interkube.plugin.answers import PASS, MemoryHandler, WireAnswer, bare_answer
from interkube.plugin.metrics import Metrics
from interkube.plugin.request import Request
from interkube.plugins.hosts.hostsfile import HostsData, reverse_address
from interkube.plugins.hosts.parse import HostsConfig

if TYPE_CHECKING:  # prometheus_client loads at the first scrape (see interkube.plugin.metrics)
    import dns.rrset
    from prometheus_client.core import Metric

log = logging.getLogger("interkube.plugin.hosts")

#: PTR questions are answered for any address in the entries, whatever the configured zones.
REVERSE_ZONES = ("in-addr.arpa.", "ip6.arpa.")
#: Their wire names (lower case): where a PTR question can name an address.
_REVERSE_WIRE = tuple(to_wire(zone) for zone in REVERSE_ZONES)
#: The types `fallthrough_unsupported` does not pass on (PTR is answered before it matters).
_SUPPORTED = (dns.rdatatype.A, dns.rdatatype.AAAA)


_HEADER = struct.Struct("!HHHHH")  # flags and the four counts (the ID is the query's)
#: An answer record: its owner, a pointer to the question's name (where dnspython's renderer
#: compresses it to), type, class, TTL and the rdata's length.
_RECORD = struct.Struct("!HHHIH")
_TO_QUESTION = 0xC000 | HEADER_LEN


def address_response(query: Query, ttl: int,
                     addresses: Iterable[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> bytes:
    """The authoritative answer to ``query`` (A or AAAA) with ``addresses``, in the bytes of
    make_response() and render() with their rrset (from_text_list: each address once): QR, AA
    and the query's RD; the question as the client wrote it; each record's owner a pointer to
    it; an OPT record advertising 1232 bytes with the query's DO when it has one. The records
    in the entries' order, as CoreDNS's hosts answers (dnspython shuffles a set's records as it
    renders them: a name's first build chose the order at random, and its template kept it)."""
    records = [_RECORD.pack(_TO_QUESTION, query.qtype, dns.rdataclass.IN, ttl, len(packed)) + packed
               for packed in dict.fromkeys(address.packed for address in addresses)]
    wire = query.wire
    flags = FLAG_QR | FLAG_AA | (query.flags & FLAG_RD)
    out = [wire[:2], _HEADER.pack(flags, 1, len(records), 0, query.edns), wire[HEADER_LEN:query.question_end], *records]
    if query.edns:
        out.append(opt_record(query.do))
    return b"".join(out)


class HostsHandler(MemoryHandler[HostsData]):
    plugin = "hosts"
    # Answers come from a generation's templates; a reloaded file swaps the generation, retiring
    # its table (MemoryHandler.swap), so the answer memo never sends the old file's answers.
    memo_safe = True

    def __init__(self, cfg: HostsConfig, origins: Sequence[str], watched: WatchedFile[HostsData],
                 inline: HostsData, file_data: HostsData, metrics: Metrics | None = None) -> None:
        served = tuple(origins) + (REVERSE_ZONES if cfg.reverse else ())
        super().__init__(ZoneSet(dict.fromkeys(served)), file_data.merged(inline))
        self.cfg = cfg
        self.origins = ZoneSet(origins)
        self.watched = watched
        self.inline = inline
        self.metrics = metrics
        #: For the metrics CoreDNS exports (hosts_reload_timestamp_seconds).
        self.reloaded_at = time.time()
        self.ticker = Ticker(cfg.reload, self.check, log)

    # -- answering --------------------------------------------------------------------------

    def wire_answer(self, req: Request, data: HostsData, zone: str) -> WireAnswer:
        """A name with no entry (nor a wildcard's), told from its bytes: SERVFAIL (or PASS)
        written on the wire, as build() answers it (a flood of random names costs no build)."""
        q = req.query
        if q.qclass != dns.rdataclass.IN:
            return PASS
        lname = q.lname
        if q.qtype == dns.rdatatype.PTR:
            # A PTR question names an address only under the reverse trees: elsewhere none is found.
            return None if lname.endswith(_REVERSE_WIRE) else PASS
        if len(lname) < 2:
            return None
        if self.origins.match(lname) is None:
            return PASS  # in a reverse zone only because PTR is served there
        names = data.wire_names
        if lname in names or b"\x01*" + lname[lname[0] + 1:] in names:
            return self._addresses(q, data)
        if self.cfg.fallthrough.applies(lname):
            return PASS
        return bare_answer(q, RCODE_SERVFAIL)

    def _addresses(self, q: Query, data: HostsData) -> bytes | None:
        """A question for the A or AAAA records a name has, answered on the wire as build() answers
        it through dnspython (the same bytes: tests/plugins/hosts compares them); None for the
        rest, which build() answers (NODATA, and a query asking for EDNS padding). dnspython's
        messages and records are then not needed by a hosts server's answers to its names: nor
        imported at its start, nor paid for (~100 µs) by each name's first answer (issue 18)."""
        if q.qtype not in _SUPPORTED or has_option(q, OPTION_PADDING):
            return None
        v4, v6 = data.lookup(dns.name.from_wire(q.wire, HEADER_LEN)[0])
        found: Sequence[ipaddress.IPv4Address | ipaddress.IPv6Address] = v4 if q.qtype == dns.rdatatype.A else v6
        if not found:
            return None
        return address_response(q, self.cfg.ttl, found)

    def build(self, req: Request, data: HostsData, zone: str) -> bytes | None:
        import dns.rrset as dns_rrset  # (imported at first use, not at every start: issue 18)

        q = req.query
        if q.qclass != dns.rdataclass.IN:
            return None
        qname = req.qname
        ttl = self.cfg.ttl
        if q.qtype == dns.rdatatype.PTR:
            addr = reverse_address(qname)
            targets = data.names.get(addr, ()) if addr is not None else ()
            if not targets:
                return None  # CoreDNS passes these on whatever fallthrough says
            return self._answer(req, dns_rrset.from_text_list(
                qname, ttl, "IN", "PTR", [t.to_text() for t in targets]))
        if self.origins.match(q.lname) is None:
            return None  # in a reverse zone only because PTR is served there
        v4, v6 = data.lookup(qname)
        if not v4 and not v6:
            if self.cfg.fallthrough.applies(q.lname):
                return None
            # Without a SOA there is no NXDOMAIN to give; CoreDNS answers SERVFAIL here.
            response = make_response(req.message, authoritative=False)
            response.set_rcode(dns.rcode.SERVFAIL)
            return render(response)
        if q.qtype == dns.rdatatype.A and v4:
            return self._answer(req, dns_rrset.from_text_list(qname, ttl, "IN", "A", list(map(str, v4))))
        if q.qtype == dns.rdatatype.AAAA and v6:
            return self._answer(req, dns_rrset.from_text_list(qname, ttl, "IN", "AAAA", list(map(str, v6))))
        if (self.cfg.fallthrough_unsupported and q.qtype not in _SUPPORTED
                and self.cfg.fallthrough.applies(q.lname)):
            return None  # e.g. HTTPS or TXT for a name hosts knows: another plugin may have it
        return self._answer(req, None)  # the name exists, not with this type: NODATA

    @staticmethod
    def _answer(req: Request, rrset: dns.rrset.RRset | None) -> bytes:
        response = make_response(req.message)
        if rrset is not None:
            response.answer.append(rrset)
        return render(response)

    # -- reloading --------------------------------------------------------------------------

    async def start(self) -> None:
        self.ticker.start()
        if self.metrics is not None:
            self.metrics.add_source(self, self.collect)

    async def stop(self) -> None:
        await self.ticker.stop()
        if self.metrics is not None:
            self.metrics.remove_source(self)

    def collect(self) -> Iterable[Metric]:
        """CoreDNS's hosts metrics, under the interkube_ namespace."""
        from prometheus_client.core import GaugeMetricFamily

        entries = GaugeMetricFamily(f"{NAMESPACE}_hosts_entries",
                                    "The combined number of entries in hosts and Corefile.")
        entries.add_metric([], len(self.data))
        yield entries
        stamp = GaugeMetricFamily(f"{NAMESPACE}_hosts_reload_timestamp_seconds",
                                  "The timestamp of the last reload of hosts file.")
        stamp.add_metric([], self.reloaded_at)
        yield stamp

    async def check(self) -> None:
        """Re-read the file if it changed; the last good entries stay when it cannot be read."""
        data = await self.watched.poll()
        if data is not None:
            self.swap(data.merged(self.inline))
            self.reloaded_at = time.time()
            log.info("reloaded %s: %d entries", self.watched.path, len(data))

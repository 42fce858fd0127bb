"""Per-query DNS metrics: counted in one dict on the hot path, shaped into families at scrape.

One entry per distinct (server and zone, proto, family, type slot, rcode, plugin, request-size
bucket, response-size bucket, duration bucket) holds [count, seconds, request bytes, response
bytes]. Every label of CoreDNS's dns_* metrics is a projection of that key, so one dict update
per query feeds five metric families. QTYPEs map to a fixed set of slots ("other" for the rest), which
keeps the dict bounded whatever a client sends.
"""

from __future__ import annotations

import time
from array import array
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence

import dns.rcode
import dns.rdatatype
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from interkube.pkg.datagrams import udpfast
from interkube.pkg.metrics import DURATION_BUCKETS, NAMESPACE, SIZE_BUCKET_OF, SIZE_BUCKETS
from interkube.pkg.shared import Kind
from interkube.plugin.request import Request, Route

#: The query types CoreDNS's metrics name; every other type is counted as "other".
MONITORED_TYPES = ("A", "AAAA", "NS", "PTR", "SRV", "SOA", "CNAME", "MX", "TXT", "DS", "DNSKEY",
                   "RRSIG", "NSEC", "NSEC3", "HINFO", "NAPTR", "CAA", "HTTPS", "SVCB", "IXFR",
                   "AXFR", "ANY")
TYPE_LABELS = (*MONITORED_TYPES, "other")
_OTHER = len(MONITORED_TYPES)


def _type_slots() -> bytes:
    table = bytearray([_OTHER]) * 65536
    for i, name in enumerate(MONITORED_TYPES):
        table[dns.rdatatype.from_text(name)] = i
    return bytes(table)


TYPE_SLOT = _type_slots()


def _rcode_text(rcode: int) -> str:
    try:
        return dns.rcode.Rcode.to_text(rcode)
    except ValueError:
        return str(rcode)


def _cumulative(buckets: Sequence[float], bounds: tuple[float, ...]) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    total = 0.0
    for bound, n in zip(bounds, buckets, strict=False):  # buckets[-1] counts what is above them
        total += n
        out.append((repr(float(bound)), total))
    total += buckets[len(bounds)]
    out.append(("+Inf", total))
    return out


#: The per-answer tally in C (see tally() in interkube/_udpfast.c), or None where the extension
#: is not built or INTERKUBE_NO_UDPFAST is set.
_tally = None if udpfast is None else udpfast.tally

#: Small integers for the label values that are strings on the hot path.
_PROTOS = {"udp": 0, "tcp": 1, "tls": 2}
_PROTO_NAMES = ("udp", "tcp", "tls")
_FIRST_BOUND = DURATION_BUCKETS[0]


class DnsMetrics:
    """The process-wide store every prometheus handler records into.

    Counts live in one dict per (server, zone), found by the route's identity; inside it the key
    is one integer packing the label slots (type, rcode, plugin, proto, family and the three
    bucket indexes), because hashing a 9-tuple per query cost more than the rest of the fast
    path's metrics work together (measured: bench/metrics_overhead.py).
    """

    def __init__(self) -> None:
        self.by_route: dict[Route, dict[int, array[float]]] = {}
        self.by_name: dict[tuple[str, str, str], dict[int, array[float]]] = {}
        self.plugins: dict[str, int] = {"": 0}
        self.plugin_names: list[str] = [""]
        #: Counts one answer: in C where the extension is built, else in Python.
        self.record: Callable[[Request, bytes], None] = self._record_py
        if udpfast is not None and _tally is not None:
            udpfast.tally_setup(TYPE_SLOT, SIZE_BUCKET_OF, DURATION_BUCKETS)
            self._tally = _tally
            self.record = self._record_c

    def _counts_for(self, route: Route) -> dict[int, array[float]]:
        # Reloads make new routes for the same (server, zone, view): their counts continue.
        counts = self.by_name.setdefault((route.server, route.zone, route.view), {})
        self.by_route[route] = counts
        return counts

    def _plugin_index(self, name: str) -> int:
        idx = self.plugins[name] = len(self.plugin_names)
        self.plugin_names.append(name)
        return idx

    def _record_c(self, req: Request, resp: bytes) -> None:
        if not self._tally(self.by_route, self.plugins, req, resp):
            self._record_py(req, resp)

    def _record_py(self, req: Request, resp: bytes) -> None:
        d = time.monotonic() - req.started
        counts, key = self._slot(req, resp)
        key |= 0 if d <= _FIRST_BOUND else bisect_left(DURATION_BUCKETS, d)
        lw = len(req.wire)
        lr = len(resp)
        e = counts.get(key)
        if e is None:
            counts[key] = array("d", (1.0, d, lw, lr))
        else:
            e[0] += 1
            e[1] += d
            e[2] += lw
            e[3] += lr

    def _slot(self, req: Request, resp: bytes) -> tuple[dict[int, array[float]], int]:
        """The counts of ``req``'s route, and the key of this answer there but its duration
        bucket (0)."""
        counts = self.by_route.get(req.route)
        if counts is None:
            counts = self._counts_for(req.route)
        plugin = self.plugins.get(req.answered_by)
        if plugin is None:
            plugin = self._plugin_index(req.answered_by)
        key = ((TYPE_SLOT[req.query.qtype] << 40) | ((resp[3] & 0x0F) << 32) | (plugin << 24)
               | (_PROTOS[req.proto] << 22) | ((len(req.client) == 4) << 21)
               | (SIZE_BUCKET_OF[len(req.wire)] << 16) | (SIZE_BUCKET_OF[len(resp)] << 8))
        return counts, key

    def memo_tally(self, req: Request, resp: bytes) -> array[float]:
        """The entry the UDP answer memo counts its sends of ``resp`` into: this answer's, in
        the first duration bucket (a send from the memo takes a few µs), made with no count
        (its labels are those of the answer just counted)."""
        counts, key = self._slot(req, resp)
        e = counts.get(key)
        if e is None:
            e = counts[key] = array("d", (0.0, 0.0, 0.0, 0.0))
        return e

    def _entries(self) -> Iterator[tuple[str, str, str, str, str, str, str, str, int, int, int,
                                         float, float, float, float]]:
        """(server, zone, view, proto, family, type, rcode, plugin, req bucket, resp bucket,
        duration bucket, count, seconds, req bytes, resp bytes) for every count kept."""
        for (server, zone, view), counts in list(self.by_name.items()):
            for key, (count, seconds, req_bytes, resp_bytes) in list(counts.items()):
                yield (server, zone, view, _PROTO_NAMES[(key >> 22) & 3], "2" if (key >> 21) & 1 else "1",
                       TYPE_LABELS[(key >> 40) & 0xFF], _rcode_text((key >> 32) & 0xFF),
                       self.plugin_names[(key >> 24) & 0xFF], (key >> 16) & 0x1F, (key >> 8) & 0xFF,
                       key & 0xFF, count, seconds, req_bytes, resp_bytes)

    def collect(self) -> Iterable[Metric]:
        requests: dict[tuple[str, ...], float] = defaultdict(float)
        responses: dict[tuple[str, ...], float] = defaultdict(float)
        nd = len(DURATION_BUCKETS) + 1
        ns = len(SIZE_BUCKETS) + 1
        durations: dict[tuple[str, ...], list[float]] = {}
        req_sizes: dict[tuple[str, ...], list[float]] = {}
        resp_sizes: dict[tuple[str, ...], list[float]] = {}
        for (server, zone, view, proto, family, qtype, rcode, plugin, rqb, rsb, db,
             count, seconds, req_bytes, resp_bytes) in self._entries():
            requests[(server, zone, view, proto, family, qtype)] += count
            responses[(server, zone, view, rcode, plugin)] += count
            h = durations.setdefault((server, zone, view, qtype), [0.0] * (nd + 1))
            h[db] += count
            h[nd] += seconds
            for table, bucket, total in ((req_sizes, rqb, req_bytes), (resp_sizes, rsb, resp_bytes)):
                h = table.setdefault((server, zone, view, proto), [0.0] * (ns + 1))
                h[bucket] += count
                h[ns] += total
        fam = CounterMetricFamily(f"{NAMESPACE}_dns_requests",
                                  "Counter of DNS requests made per zone, protocol and family.",
                                  labels=["server", "zone", "view", "proto", "family", "type"])
        for labels, v in requests.items():
            fam.add_metric(list(labels), v)
        yield fam
        fam = CounterMetricFamily(f"{NAMESPACE}_dns_responses", "Counter of response status codes.",
                                  labels=["server", "zone", "view", "rcode", "plugin"])
        for labels, v in responses.items():
            fam.add_metric(list(labels), v)
        yield fam
        hist = HistogramMetricFamily(f"{NAMESPACE}_dns_request_duration_seconds",
                                     "Histogram of the time (in seconds) each request took per zone.",
                                     labels=["server", "zone", "view", "type"])
        for labels, h in durations.items():
            hist.add_metric(list(labels), _cumulative(h[:nd], DURATION_BUCKETS), h[nd])
        yield hist
        for name, help_text, table in (
                ("request_size_bytes",
                 "Size of the EDNS0 UDP buffer in bytes (64K for TCP) per zone and protocol.", req_sizes),
                ("response_size_bytes", "Size of the returned response in bytes.", resp_sizes)):
            hist = HistogramMetricFamily(f"{NAMESPACE}_dns_{name}", help_text,
                                         labels=["server", "zone", "view", "proto"])
            for labels, h in table.items():
                hist.add_metric(list(labels), _cumulative(h[:ns], SIZE_BUCKETS), h[ns])
            yield hist


DNS_METRICS = Kind("the DNS metrics of every server block", DnsMetrics)

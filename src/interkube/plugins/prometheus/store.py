"""Per-query DNS metrics: counted in one dict on the hot path, shaped into families at scrape.

One entry per distinct (route, proto, family, type slot, rcode, plugin, request-size bucket,
response-size bucket, duration bucket) holds [count, seconds, request bytes, response bytes].
Every label of CoreDNS's dns_* metrics is a projection of that key, so one dict update per query
feeds five metric families. QTYPEs map to a fixed set of slots ("other" for the rest), which
keeps the dict bounded whatever a client sends.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable

import dns.rcode
import dns.rdatatype
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from interkube.server.metrics import DURATION_BUCKETS, NAMESPACE, SIZE_BUCKET_OF, SIZE_BUCKETS
from interkube.server.request import Request

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
        return dns.rcode.to_text(rcode)  # type: ignore[arg-type]
    except ValueError:
        return str(rcode)


def _cumulative(buckets: list[int], bounds: tuple[float, ...]) -> list[tuple[str, float]]:
    out = []
    total = 0
    for bound, n in zip(bounds, buckets):
        total += n
        out.append((repr(float(bound)), total))
    total += buckets[len(bounds)]
    out.append(("+Inf", total))
    return out


class DnsMetrics:
    """The process-wide store every prometheus handler records into."""

    def __init__(self) -> None:
        self.counts: dict[tuple[object, ...], list[float]] = {}

    def record(self, req: Request, resp: bytes) -> None:
        d = time.monotonic() - req.started
        q = req.query
        key = (req.route, req.proto, len(req.client), TYPE_SLOT[q.qtype], resp[3] & 0x0F,  # type: ignore[union-attr]
               req.answered_by, SIZE_BUCKET_OF[len(req.wire)], SIZE_BUCKET_OF[len(resp)],
               bisect_left(DURATION_BUCKETS, d))
        e = self.counts.get(key)
        if e is None:
            self.counts[key] = [1, d, len(req.wire), len(resp)]
        else:
            e[0] += 1
            e[1] += d
            e[2] += len(req.wire)
            e[3] += len(resp)

    def collect(self) -> Iterable[Metric]:
        requests: dict[tuple[str, ...], float] = defaultdict(float)
        responses: dict[tuple[str, ...], float] = defaultdict(float)
        nd = len(DURATION_BUCKETS) + 1
        ns = len(SIZE_BUCKETS) + 1
        durations: dict[tuple[str, ...], list[float]] = {}
        req_sizes: dict[tuple[str, ...], list[float]] = {}
        resp_sizes: dict[tuple[str, ...], list[float]] = {}
        for key, (count, seconds, req_bytes, resp_bytes) in list(self.counts.items()):
            route, proto, addr_len, slot, rcode, plugin, rqb, rsb, db = key
            server, zone = route.server, route.zone  # type: ignore[attr-defined]
            family = "2" if addr_len == 4 else "1"
            qtype = TYPE_LABELS[slot]  # type: ignore[index]
            requests[(server, zone, "", proto, family, qtype)] += count  # type: ignore[index]
            responses[(server, zone, "", _rcode_text(rcode), plugin)] += count  # type: ignore[arg-type, index]
            h = durations.setdefault((server, zone, "", qtype), [0.0] * (nd + 1))  # type: ignore[index]
            h[db] += count  # type: ignore[index]
            h[nd] += seconds
            for table, bucket, total in ((req_sizes, rqb, req_bytes), (resp_sizes, rsb, resp_bytes)):
                h = table.setdefault((server, zone, "", proto), [0.0] * (ns + 1))  # type: ignore[index]
                h[bucket] += count  # type: ignore[index]
                h[ns] += total
        fam = CounterMetricFamily(f"{NAMESPACE}_dns_requests", "Counter of DNS requests made per zone, protocol and family.",
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
            hist.add_metric(list(labels), _cumulative(h[:nd], DURATION_BUCKETS), h[nd])  # type: ignore[arg-type]
        yield hist
        for name, help_text, table in (
                ("request_size_bytes", "Size of the EDNS0 UDP buffer in bytes (64K for TCP) per zone and protocol.", req_sizes),
                ("response_size_bytes", "Size of the returned response in bytes.", resp_sizes)):
            hist = HistogramMetricFamily(f"{NAMESPACE}_dns_{name}", help_text, labels=["server", "zone", "view", "proto"])
            for labels, h in table.items():
                hist.add_metric(list(labels), _cumulative(h[:ns], SIZE_BUCKETS), h[ns])  # type: ignore[arg-type]
            yield hist

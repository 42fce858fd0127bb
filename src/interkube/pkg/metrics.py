"""Metric names and bucket bounds shared by every part that publishes metrics.

Names follow CoreDNS's ``<namespace>_<plugin>_<what>`` with ``interkube`` as the namespace;
the buckets are CoreDNS's, so that dashboards built for it read ours unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # prometheus_client loads when metrics are first collected (see interkube.plugin.metrics)
    from prometheus_client.core import Metric

NAMESPACE = "interkube"

#: Turns a part's plain counters into metric families when /metrics is scraped.
Source = Callable[[], Iterable["Metric"]]


class MetricSources(Protocol):
    """Where parts publish their sources (the process's Metrics, interkube.plugin.metrics)."""

    def add_source(self, owner: Hashable, source: Source) -> None:
        """Publish ``source()``'s families at every scrape until ``remove_source(owner)``."""

    def remove_source(self, owner: Hashable) -> None:
        """Stop publishing ``owner``'s source."""

#: Bucket bounds as CoreDNS uses them (plugin/pkg/... ExponentialBuckets and size buckets).
DURATION_BUCKETS: tuple[float, ...] = tuple(0.00025 * 2 ** i for i in range(16))
SIZE_BUCKETS: tuple[float, ...] = (0, 100, 200, 300, 400, 511, 1023, 2047, 4095, 8291, 16000, 32000,
                                   48000, 64000)


def _size_table() -> bytes:
    """size -> bucket index for every size a DNS message can have: one byte lookup per query.

    Bucket ``b`` holds the sizes above bound ``b - 1`` up to bound ``b``; the last, those above
    every bound. Written run by run: a loop over the 65,536 sizes was 7 ms of every start."""
    table = bytearray()
    for b, bound in enumerate(SIZE_BUCKETS):
        table += bytes([b]) * (int(bound) + 1 - len(table))
    table += bytes([len(SIZE_BUCKETS)]) * (65536 - len(table))
    return bytes(table)


SIZE_BUCKET_OF = _size_table()

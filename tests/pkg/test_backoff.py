"""The one backoff (TLS upstream reconnects, a cluster's relists and re-watches)."""

from __future__ import annotations

from interkube.pkg.backoff import retry_delay


def test_the_delay_doubles_per_failure_with_jitter_up_to_the_cap() -> None:
    for failures in range(1, 15):
        nominal = min(5.0, 0.1 * 2 ** (failures - 1))
        for _ in range(50):
            assert nominal / 2 <= retry_delay(failures, first=0.1, cap=5.0) <= nominal


def test_no_count_of_failures_overflows_the_delay() -> None:
    # A cluster unreachable for days counts thousands of failures; 2**n must stay a number.
    assert 15.0 <= retry_delay(100_000, first=0.5, cap=30.0) <= 30.0

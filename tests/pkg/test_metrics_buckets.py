"""The size buckets' lookup table (interkube.pkg.metrics) against the buckets' definition."""

from __future__ import annotations

from bisect import bisect_left

from interkube.pkg.metrics import SIZE_BUCKET_OF, SIZE_BUCKETS


def test_each_size_is_in_the_first_bucket_whose_bound_is_not_below_it() -> None:
    assert SIZE_BUCKET_OF == bytes(bisect_left(SIZE_BUCKETS, n) for n in range(65536))

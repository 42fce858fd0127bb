"""The garbage collector once a configuration runs (interkube.server.collector, issue 19)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from interkube.server import collector


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()  # (settle froze the test process's objects)
        gc.set_threshold(*thresholds)


def test_settle_freezes_what_is_alive_and_makes_full_collections_rarer(restored_collector: None) -> None:
    gc.set_threshold(700, 10, 10)  # Python's defaults
    collector.settle()
    assert gc.get_freeze_count() > 0
    # The young and middle generations as they were; a full collection every 100 of the middle
    # one's, not every 10.
    assert gc.get_threshold() == (700, 10, collector.FULL_COLLECTION_EVERY)
    assert collector.FULL_COLLECTION_EVERY >= 100

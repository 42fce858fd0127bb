"""Python's garbage collector in a server that must answer within milliseconds.

A full collection walks every container object the process holds. Most of them are made at
start (modules, plugins, a configuration's data and templates) and live as long as it does; a
full collection of ~100,000 such objects paused the event loop for 30-40 ms, and under a flood
(whose short-lived objects keep promoting survivors) one came every second or so: that was the
p99 of answers from memory (issue 19). Once a configuration is running, :func:`settle` collects
once and moves everything alive to the permanent generation (``gc.freeze``), which collections
do not walk; a full collection then walks only what was made since, and takes a millisecond or
two.

What is frozen is not collected while frozen, so objects in reference cycles that become garbage
later (the data a reload replaces) would stay. Each settle therefore unfreezes first and
collects: :func:`settle` runs at start and again when a reload's previous configuration is gone,
so at most what one configuration held waits for the next one.

What is made since includes the queries waiting on the slow path: under a flood towards a silent
upstream, 2,048 of them in flight for seconds are some 40,000 objects, which a full collection
walks in 10-40 ms and frees none of (they end by reference counting). Python starts one every
10 collections of the middle generation, every two seconds or so under such a flood: settle also
makes that every FULL_COLLECTION_EVERY, so that the pauses come ten times less often.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger("interkube.server")

#: Collections of the middle generation between two full ones (Python's third threshold; its
#: default is 10).
FULL_COLLECTION_EVERY = 100


def settle() -> None:
    """Collect everything, then freeze what is alive (see the module's docstring)."""
    started = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
    log.debug("garbage collector: %d objects frozen in %.1f ms", gc.get_freeze_count(),
              (time.perf_counter() - started) * 1000)

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
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger("interkube.server")


def settle() -> None:
    """Collect everything, then freeze what is alive (see the module's docstring)."""
    started = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    log.debug("garbage collector: %d objects frozen in %.1f ms", gc.get_freeze_count(),
              (time.perf_counter() - started) * 1000)

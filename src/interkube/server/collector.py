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

Python decides when to collect by counting: a young collection when allocations minus
deallocations of container objects pass 700. A server whose tables are full replaces entries
(the parse memo, answer templates, the cache: a new entry made, the oldest freed) and so
allocates as much as it frees: the count stays low while every new entry waits in the young
generation, which under a fuzz of new names grew to 20,000-60,000 objects before a burst set a
collection off, 8-40 ms of CPU each. And Python starts a full collection when the survivors
promoted since the last one pass a quarter of the old generation, counting entries that were
promoted and freed since as if they were still there: with the tables replacing their entries,
one came every 8 s or so, walking every remembered entry (~100 ms at 100,000 entries). Those
were the stalls of 50-225 ms under a fuzz (issue 19, section 7).

So while a configuration runs, :class:`Schedule` collects by the clock instead: the young
generation every :data:`YOUNG_EVERY` seconds (what a tenth of a second made: a millisecond or
so), the middle one every :data:`MIDDLE_EVERY` of those, after which what survived both is
frozen (moved out of every later collection's way, as :func:`settle` does). What is frozen is
collected when the heap has grown by :data:`THAW_GROWTH` since it was last collected (a settle:
the old generation collected as Go collects its heap, on growth, never on churn), so cycles that
become garbage once frozen wait at most that long; replaced entries are freed by reference
counting whether frozen or not, so churn alone never triggers it.

Growth is what the collector follows: container objects, the only ones that can be cyclic
garbage. Counting the frozen ones (``gc.get_freeze_count``) walks the whole frozen list, 22 ms
for 3 million objects (what a cluster of 100,000 Services holds): too dear for every freeze.
So the schedule watches the memory blocks Python's allocator has handed out
(``sys.getallocatedblocks``, a counter per arena: half a millisecond at 9 million blocks), and
counts the frozen objects only once the blocks have grown as much; a heap that grew by data the
collector does not follow (the names and answers tables remember, in bytes) is not walked, and
the blocks are watched from there.
"""

from __future__ import annotations

import gc
import logging
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # (imported where the schedule runs: `interkube serve` holds the collector before
    import asyncio  # asyncio is imported, without OpenSSL where it can: see interkube.server.openssl)

log = logging.getLogger("interkube.server")

#: Collections of the middle generation between two full ones (Python's third threshold; its
#: default is 10).
FULL_COLLECTION_EVERY = 100
#: Seconds between two young collections while a configuration runs.
YOUNG_EVERY = 0.1
#: Young collections between two collections of the middle generation (each followed by a freeze):
#: the middle collection walks what survived since the last one (under a fuzz of new names, the
#: tables' new entries: 10-20 ms of CPU a second's worth, 2-4 ms a fifth of a second's).
MIDDLE_EVERY = 2
#: The frozen objects are collected (a settle) once the heap has this share more memory blocks
#: than after the last settle, and at least THAW_FLOOR more. The floor is what a small server
#: lets its heap grow by before it looks for frozen garbage (some 30 MB of small objects): a
#: flood towards a silent upstream grows a fresh server's heap by 200,000-240,000 blocks of
#: queries in flight, and a floor of 200,000 had it walk the heap for 33-39 ms and free nothing.
THAW_GROWTH = 1.0
THAW_FLOOR = 500_000
#: ... and the frozen objects too have grown by THAW_GROWTH, and at least this many.
THAW_FLOOR_OBJECTS = 100_000


def hold() -> None:
    """No automatic collections until :func:`release`: what `interkube serve` does while its
    modules load and its configuration is built. A start makes some 15,000 container objects
    and almost no garbage (28 of them for a hosts/forward server), and Python's collections
    along the way, which walk those objects once or twice each, were 2% of the CPU to the first
    answer (issue 18). Does nothing when the collector is disabled already."""
    if gc.isenabled():
        gc.disable()
        _HELD[:] = [True]


def release() -> None:
    """After :func:`hold`: everything alive, the start's objects with it, is frozen without being
    walked (the start's little garbage waits for the next full settle) and collections resume;
    the first :func:`settle` then walks only what comes after. Does nothing without a hold, nor
    the second time."""
    if _HELD:
        _HELD.clear()
        gc.freeze()
        gc.enable()


#: [True] while :func:`hold` keeps the collector off.
_HELD: list[bool] = []


def settle() -> None:
    """Collect everything, then freeze what is alive (see the module's docstring).

    The first settle of a process (at start) collects the young and middle generations only: the
    old one (or the frozen objects of :func:`release`) then holds the modules, classes and
    functions imported, which a start does not make garbage of (a hosts/forward server's full
    collection there freed 10 objects of 26,000, and was 2% of the CPU to its first answer,
    issue 18). What it missed waits for the next settle.
    """
    started = time.perf_counter()
    first = not _SETTLED[0]
    gc.unfreeze()
    gc.collect(1 if first else 2)
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
    _SETTLED[:] = [sys.getallocatedblocks(), gc.get_freeze_count()]
    log.debug("garbage collector: %d objects frozen (%d memory blocks) in %.1f ms", _SETTLED[1], _SETTLED[0],
              (time.perf_counter() - started) * 1000)


#: The heap's memory blocks, and the objects frozen, after the last settle (the blocks are
#: moved on when they grew by data the collector does not follow).
_SETTLED = [0, 0]


class Schedule:
    """Collections by the clock while a configuration runs (see the module's docstring).

    ``start()`` on the running loop, ``stop()`` at the end; nothing is collected while the
    collector is disabled (``gc.disable()``, by an operator's embedding or a test).
    """

    def __init__(self) -> None:
        self._timer: asyncio.TimerHandle | None = None
        self._ticks = 0

    def start(self) -> None:
        import asyncio

        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(YOUNG_EVERY, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        import asyncio

        self._timer = asyncio.get_running_loop().call_later(YOUNG_EVERY, self._tick)
        if not gc.isenabled():
            return
        self._ticks += 1
        if self._ticks % MIDDLE_EVERY:
            gc.collect(0)
            return
        gc.collect(1)
        gc.freeze()
        blocks, objects = _SETTLED
        now = sys.getallocatedblocks()
        if now > blocks + max(THAW_FLOOR, blocks * THAW_GROWTH):
            if gc.get_freeze_count() > objects + max(THAW_FLOOR_OBJECTS, objects * THAW_GROWTH):
                settle()
            else:
                _SETTLED[0] = now

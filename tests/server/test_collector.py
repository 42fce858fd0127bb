"""The garbage collector once a configuration runs (interkube.server.collector, issue 19)."""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref
from collections.abc import Iterator

import pytest

from interkube.server import collector
from testkit.servers import free_port, in_process
from testkit.waiting import until


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


class _Entry:
    """A table entry as the server's tables hold them: a container object, tracked by the
    collector."""

    def __init__(self, n: int) -> None:
        self.n = n


def _replace(table: dict[int, _Entry], start: int, count: int, size: int) -> None:
    """A full table at work: each new entry made, the oldest freed (Python's allocation count
    stays where it was)."""
    for n in range(start, start + count):
        table[n] = _Entry(n)
        table.pop(n - size, None)


@pytest.fixture
def schedule(restored_collector: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[collector.Schedule]:
    monkeypatch.setattr(collector, "YOUNG_EVERY", 0.001)
    gc.collect()
    collector.settle()
    yield collector.Schedule()


@pytest.fixture
def thaws(schedule: collector.Schedule, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The schedule's thaws (settles, from the schedule's own on), counted; its floors lowered to
    a test's sizes."""
    settles: list[int] = []
    real_settle = collector.settle
    monkeypatch.setattr(collector, "settle", lambda: (settles.append(1), real_settle())[1])
    monkeypatch.setattr(collector, "THAW_FLOOR", 20_000)
    monkeypatch.setattr(collector, "THAW_FLOOR_OBJECTS", 20_000)
    monkeypatch.setattr(collector, "THAW_GROWTH", 0.0)
    return settles


async def _ticks(sched: collector.Schedule, n: int) -> None:
    target = sched._ticks + n
    await until(lambda: sched._ticks >= target, f"{n} ticks of the schedule", timeout=10, every=0.001)


async def test_the_young_generation_is_bounded_by_the_clock_when_tables_replace_entries(
        schedule: collector.Schedule) -> None:
    table: dict[int, _Entry] = {}
    _replace(table, 0, 50_000, 50_000)
    collector.settle()
    # Without the schedule, Python's count (allocations minus deallocations) never reaches its
    # threshold: every new entry stays young, and the collection that comes at last walks them all.
    _replace(table, 50_000, 50_000, 50_000)
    assert len(gc.get_objects(0)) >= 50_000
    schedule.start()
    try:
        for chunk in range(20):
            _replace(table, 100_000 + chunk * 2_000, 2_000, 50_000)
            await _ticks(schedule, 1)
            assert len(gc.get_objects(0)) < 1_000
    finally:
        schedule.stop()


async def test_what_survives_is_frozen_and_churn_does_not_thaw_it(
        schedule: collector.Schedule, thaws: list[int]) -> None:
    table: dict[int, _Entry] = {}
    _replace(table, 0, 10_000, 10_000)
    collector.settle()  # (the table is the heap a running server starts with)
    thaws.clear()
    _replace(table, 10_000, 10_000, 10_000)  # (made after the settle: to be frozen by the schedule)
    frozen = gc.get_freeze_count()
    schedule.start()
    try:
        await _ticks(schedule, collector.MIDDLE_EVERY)
        # the table's entries now frozen: tracked, but in no generation a collection walks. (The
        # frozen count grows by about the table's size; not exactly: frozen objects that others
        # free meanwhile, the event loop's or pytest's, leave it.)
        assert gc.get_freeze_count() >= frozen + 9_000
        assert all(gc.is_tracked(entry) for entry in table.values())
        assert not [o for o in gc.get_objects() if type(o) is _Entry]
        for chunk in range(10):  # five times the table replaced: churn, not growth
            _replace(table, 20_000 + chunk * 5_000, 5_000, 10_000)
            await _ticks(schedule, collector.MIDDLE_EVERY)
        assert not thaws
    finally:
        schedule.stop()


async def test_cycles_that_become_garbage_once_frozen_are_collected_when_the_frozen_grow(
        schedule: collector.Schedule, thaws: list[int]) -> None:
    collected: list[int] = []

    class Node:
        def __init__(self) -> None:
            self.me = self  # a cycle: only the cyclic collector frees it

    node = Node()
    weakref.finalize(node, collected.append, 1)
    schedule.start()
    try:
        await _ticks(schedule, collector.MIDDLE_EVERY)
        assert gc.is_tracked(node) and all(o is not node for o in gc.get_objects())  # frozen
        del node
        await _ticks(schedule, collector.MIDDLE_EVERY)
        assert not collected  # frozen garbage: not walked while the frozen do not grow
        grown = [_Entry(n) for n in range(25_000)]  # (25,000 objects the collector follows)
        await _ticks(schedule, 2 * collector.MIDDLE_EVERY)
        assert collected == [1] and thaws
        del grown
    finally:
        schedule.stop()


async def test_a_running_server_collects_by_the_clock_until_it_stops(
        restored_collector: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(collector, "YOUNG_EVERY", 0.001)
    async with in_process(f".:{free_port()} {{\n bind 127.0.0.1\n whoami\n}}\n") as server:
        schedule = server._collections  # type: ignore[attr-defined]
        await _ticks(schedule, 3)
    assert schedule._timer is None


async def test_a_heap_grown_by_data_the_collector_does_not_follow_is_not_walked(
        schedule: collector.Schedule, thaws: list[int]) -> None:
    blocks = collector._SETTLED[0]
    schedule.start()
    try:
        remembered = [b"answer %d" % n for n in range(50_000)]  # 50,000 blocks, one object followed
        await _ticks(schedule, 2 * collector.MIDDLE_EVERY)
        assert not thaws
        assert collector._SETTLED[0] >= blocks + 50_000  # watched from there
        del remembered
    finally:
        schedule.stop()


#: Settles in a fresh process, reporting the generations each collected.
FIRST_SETTLES = """
import gc, sys
from interkube.server import collector
seen = []
gc.callbacks.append(lambda phase, info: phase == "start" and seen.append(info["generation"]))
if sys.argv[1] == "held":
    collector.hold()
    made = [[n] for n in range(10_000)]  # (more than enough for a young collection)
    print(seen, gc.isenabled(), end=" ")
    collector.release()
for _ in range(2):
    collector.settle()
    print(seen, end=" ")
    seen.clear()
print(gc.isenabled())
"""


@pytest.mark.parametrize(("how", "expected"), [
    ("plain", "[1] [2] True"),
    # Nothing collected while held (the collector off), then the same settles.
    ("held", "[] False [1] [2] True"),
])
def test_the_first_settle_of_a_process_leaves_the_old_generation_unwalked(how: str, expected: str) -> None:
    """At start (issue 18): the first settle collects the young and middle generations only (the
    old one is what the start imported); the next ones collect everything (a reload's cycles)."""
    done = subprocess.run([sys.executable, "-c", FIRST_SETTLES, how], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == expected, done.stderr


def test_a_hold_leaves_a_disabled_collector_disabled() -> None:
    """An operator's (or a test's) gc.disable() is not undone by the server's start."""
    program = ("import gc\nfrom interkube.server import collector\ngc.disable()\ncollector.hold()\n"
               "collector.release()\nprint(gc.isenabled(), gc.get_freeze_count())\n")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["False", "0"], done.stderr

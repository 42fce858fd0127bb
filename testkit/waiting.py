"""Waiting for a condition in tests: converge, or fail naming what never happened.

Tests of live sources and running servers wait for effects (a watch event applied, an answer
changed, a process listening) without asserting how long they take; the timeout only bounds a
test that would otherwise hang. :func:`until` waits in a test's event loop (the condition may
be async), :func:`wait_until` blocks (synchronous tests, fixtures that start processes).

Both return the condition's first true value, so a wait can hand over what it waited for::

    reply = wait_until(lambda: query(name, "A", port).answer or None, f"{name} answered")
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

T = TypeVar("T")

#: What was waited for, in words; a function when the words need the state at the failure
#: (the last answer seen, a process's log).
What = str | Callable[[], str]


class NeverHappened(AssertionError):
    """A condition did not hold in time (an AssertionError: pytest shows it as a failed check)."""


class _Deadline:
    """What both waits share: the deadline, the last probe error let pass, and the failure."""

    def __init__(self, what: What, timeout: float, alive: Callable[[], bool] | None) -> None:
        self.what = what
        self.timeout = timeout
        self.at = time.monotonic() + timeout
        self.alive = alive
        self.last: Exception | None = None

    def check(self) -> None:
        """Raise NeverHappened when waiting longer is pointless; return to poll again."""
        if self.alive is not None and not self.alive():
            raise self._error("it stopped running first")
        if time.monotonic() > self.at:
            raise self._error(f"waited {self.timeout:g}s" + (f"; last error: {self.last!r}" if self.last else ""))

    def _error(self, why: str) -> NeverHappened:
        what = self.what() if callable(self.what) else self.what
        return NeverHappened(f"never happened: {what} ({why})")


async def until(condition: Callable[[], T | Awaitable[T]], what: What, timeout: float = 15.0, *,
                every: float = 0.02, ignoring: tuple[type[Exception], ...] = (),
                alive: Callable[[], bool] | None = None) -> T:
    """Poll ``condition`` (which may be async, e.g. ask a server) until it returns something
    true, and return that; NeverHappened naming ``what`` if it has not within ``timeout``
    seconds, or as soon as ``alive()`` is false (a process that exited gets nowhere).
    Exceptions of the ``ignoring`` types count as "not yet"."""
    deadline = _Deadline(what, timeout, alive)
    while True:
        try:
            held = condition()
            if inspect.isawaitable(held):
                held = await held
        except ignoring as exc:
            deadline.last, held = exc, None
        if held:
            return cast(T, held)
        deadline.check()
        await asyncio.sleep(every)


def wait_until(condition: Callable[[], T], what: What, timeout: float = 15.0, *, every: float = 0.05,
               ignoring: tuple[type[Exception], ...] = (), alive: Callable[[], bool] | None = None) -> T:
    """:func:`until` for code outside an event loop (synchronous tests, fixtures that start
    processes): blocks between polls."""
    deadline = _Deadline(what, timeout, alive)
    while True:
        try:
            held: T | None = condition()
        except ignoring as exc:
            deadline.last, held = exc, None
        if held:
            return held
        deadline.check()
        time.sleep(every)

"""Doing something every so often, from a task, between start() and stop().

One ticker serves everything that polls: *file* and *hosts* re-reading their files, snapshot
clusters re-reading theirs, certificate files followed for rotation (:mod:`interkube.tlsutil.watch`)
and the *reload* plugin's look at the Corefile. Polling, not inotify: inotify misses the symlink
swap by which the kubelet updates ConfigMap and Secret volumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable

#: Seconds between two ticks, or a function giving them when the ticker starts (so that a
#: module-level default may be lowered, e.g. by tests, after the ticker was made).
Interval = float | Callable[[], float]


class Ticker:
    """Awaits ``tick()`` every ``interval`` seconds (± ``jitter``) until stopped; 0 means never.

    A tick that raises is logged (as "``what`` failed") and the ticking goes on: a bug in one
    check must not end reloading for good. ``start()`` and ``stop()`` may be called twice.
    """

    def __init__(self, interval: Interval, tick: Callable[[], Awaitable[object]], log: logging.Logger,
                 *, what: str = "reload check", jitter: float = 0.0) -> None:
        self.interval = interval
        self.tick = tick
        self.log = log
        self.what = what
        #: Each wait is drawn from interval ± jitter, as CoreDNS's reload does, so that servers
        #: started together do not all read their files at the same instant.
        self.jitter = jitter
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        if self._task is not None:
            return
        every = self.interval() if callable(self.interval) else self.interval
        if every > 0:
            self._task = asyncio.get_running_loop().create_task(self._run(every))

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, every: float) -> None:
        # A jitter above half the interval is cut to half (as CoreDNS does): a wait never
        # shrinks below half the interval, however the draws fall.
        jitter = min(self.jitter, every / 2)
        while True:
            await asyncio.sleep(every + random.uniform(-jitter, jitter) if jitter else every)
            try:
                await self.tick()
            except Exception:  # a bug in one check must not end the ticking for good
                self.log.exception("%s failed", self.what)

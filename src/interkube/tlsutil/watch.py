"""Polling certificate files for changes.

cert-manager (through the kubelet) rotates a mounted Secret by swapping a symlink to a new
directory; other tools rename a new file over the old one or rewrite it in place. Polling the
files' contents catches all of these, needs no inotify (which misses symlink swaps made above
the watched path), and costs a few small reads per interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger("interkube.tlsutil")

#: Seconds between two looks at the files. Read at start(), so tests may lower it.
POLL_INTERVAL = 2.0


class Poller:
    """Calls ``check()`` every ``interval`` seconds from a task, between start() and stop()."""

    def __init__(self, check: Callable[[], object], interval: float | None = None, name: str = "") -> None:
        self.check = check
        self.interval = interval
        self.name = name
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            interval = self.interval if self.interval is not None else POLL_INTERVAL
            self._task = asyncio.get_running_loop().create_task(self._run(interval))

    async def _run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self.check()
            except Exception:  # a bug in a check must not end the watching for good
                log.exception("checking %s for changes failed", self.name or "certificate files")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

"""The reload timer: re-read the Corefile every INTERVAL ± JITTER and reload when it changed."""

from __future__ import annotations

import asyncio
import logging
import random

from interkube.pkg.shared import Kind
from interkube.plugin.services import Services
from interkube.plugins.reload.parse import ReloadConfig

log = logging.getLogger("interkube.plugin.reload")


class ReloadTimer:
    """One `reload` directive's timer. Several server blocks may each say `reload`, and a reload
    starts the new configuration's timers before it stops the old one's: one running timer
    per process is enough, and when it stops another started one takes over."""

    def __init__(self, cfg: ReloadConfig, services: Services) -> None:
        self.cfg = cfg
        self.services = services
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        started = self.services.shared.get_or_create(RELOAD_TIMERS, None, ReloadTimers)
        started.timers.append(self)
        if not any(t._task is not None for t in started.timers):
            self._run()

    async def stop(self) -> None:
        started = self.services.shared.get_or_create(RELOAD_TIMERS, None, ReloadTimers)
        if self in started.timers:
            started.timers.remove(self)
        if self._task is not None:
            self._task.cancel()
            self._task = None
            if started.timers:
                started.timers[0]._run()

    def _run(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        seen = self.services.current_digest()
        while True:
            delay = self.cfg.interval + random.uniform(-self.cfg.jitter, self.cfg.jitter)
            await asyncio.sleep(max(0.1, delay))
            now = await asyncio.get_running_loop().run_in_executor(None, self.services.digest_on_disk)
            if now != seen:
                seen = now
                log.info("Corefile changed, reloading")
                self.services.request_reload()


class ReloadTimers:
    """The started timers of the process; the one with a task runs."""

    def __init__(self) -> None:
        self.timers: list[ReloadTimer] = []


RELOAD_TIMERS = Kind("the started reload timers", ReloadTimers)

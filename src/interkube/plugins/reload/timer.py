"""The reload timer: re-read the Corefile every INTERVAL ± JITTER and reload when it changed."""

from __future__ import annotations

import asyncio
import logging

from interkube.pkg.shared import Kind
from interkube.pkg.ticker import Ticker
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
        self.ticker = Ticker(cfg.interval, self._check, log, what="checking the Corefile for changes",
                             jitter=cfg.jitter)
        #: The digest of the configuration this timer last saw (set when its ticker starts).
        self._seen = ""

    async def start(self) -> None:
        started = self.services.shared.get_or_create(RELOAD_TIMERS, None, ReloadTimers)
        started.timers.append(self)
        if not any(t.ticker.running for t in started.timers):
            self._run()

    async def stop(self) -> None:
        started = self.services.shared.get_or_create(RELOAD_TIMERS, None, ReloadTimers)
        if self in started.timers:
            started.timers.remove(self)
        if self.ticker.running:
            # The successor starts before this one's stop is awaited: no start() in between
            # can find no timer running and start a second one.
            if started.timers:
                started.timers[0]._run()
            await self.ticker.stop()

    def _run(self) -> None:
        self._seen = self.services.current_digest()
        self.ticker.start()

    async def _check(self) -> None:
        now = await asyncio.get_running_loop().run_in_executor(None, self.services.digest_on_disk)
        if now != self._seen:
            self._seen = now
            log.info("Corefile changed, reloading")
            self.services.request_reload()


class ReloadTimers:
    """The started timers of the process; the one with a task runs."""

    def __init__(self) -> None:
        self.timers: list[ReloadTimer] = []


RELOAD_TIMERS = Kind("the started reload timers", ReloadTimers)

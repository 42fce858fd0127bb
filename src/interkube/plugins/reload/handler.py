"""The reload timer: re-read the Corefile every INTERVAL ± JITTER and reload when it changed."""

from __future__ import annotations

import asyncio
import logging
import random

from interkube.plugins.reload.parse import ReloadConfig
from interkube.server.plugin import Handler
from interkube.server.request import Request
from interkube.server.services import Services

log = logging.getLogger("interkube.plugin.reload")


class ReloadHandler(Handler):
    plugin = "reload"

    def __init__(self, cfg: ReloadConfig, services: Services) -> None:
        self.cfg = cfg
        self.services = services
        self._task: asyncio.Task[None] | None = None

    def fast(self, req: Request) -> bytes | None:
        return self.next.fast(req)

    async def serve(self, req: Request) -> bytes:
        return await self.next.serve(req)

    async def start(self) -> None:
        # Several server blocks may each say `reload`: one timer per process is enough.
        owner = self.services.shared.get("reload:timer")
        if owner is not None and owner._task is not None and not owner._task.done():
            return
        self.services.shared["reload:timer"] = self
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self.services.shared.get("reload:timer") is self:
            del self.services.shared["reload:timer"]

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

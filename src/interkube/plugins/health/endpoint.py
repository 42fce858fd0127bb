"""The health endpoint: 200 "OK" on /health while the process serves (lameduck included)."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from interkube.plugin.http import HttpEndpoint
from interkube.plugin.services import Services
from interkube.plugins.health.parse import HealthConfig

log = logging.getLogger("interkube.plugin.health")


class Health:
    """One `health` directive: its route on the shared endpoint, and its lameduck."""

    def __init__(self, cfg: HealthConfig, endpoint: HttpEndpoint, services: Services) -> None:
        self.cfg = cfg
        self.endpoint = endpoint
        self.services = services

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def start(self) -> None:
        await self.endpoint.add("/health", self, self._health)

    async def stop(self) -> None:
        await self.endpoint.remove(self)

    async def lameduck(self) -> None:
        """On shutdown, keep serving for the lameduck duration; `ready` says not ready meanwhile."""
        if self.cfg.lameduck <= 0:
            return
        log.info("lameduck: still serving for %gs before shutting down", self.cfg.lameduck)
        self.services.lameduck = True
        await asyncio.sleep(self.cfg.lameduck)

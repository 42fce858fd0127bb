"""The health endpoint: 200 "OK" on /health while the process serves (lameduck included)."""

from __future__ import annotations

from aiohttp import web

from interkube.plugins.health.parse import HealthConfig
from interkube.server.http import HttpEndpoint
from interkube.server.plugin import Handler
from interkube.server.request import Request


class HealthHandler(Handler):
    """Not a query handler: it only runs the endpoint and holds the lameduck duration."""

    plugin = "health"

    def __init__(self, cfg: HealthConfig, endpoint: HttpEndpoint) -> None:
        self.cfg = cfg
        self.endpoint = endpoint

    def fast(self, req: Request) -> bytes | None:
        return self.next.fast(req)

    async def serve(self, req: Request) -> bytes:
        return await self.next.serve(req)

    @property
    def lameduck(self) -> float:
        return self.cfg.lameduck

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def start(self) -> None:
        await self.endpoint.add("/health", self, self._health)

    async def stop(self) -> None:
        await self.endpoint.remove(self)

"""The ready endpoint: 200 when every part that reports readiness is ready, else 503 and a list."""

from __future__ import annotations

from aiohttp import web

from interkube.plugins.ready.parse import ReadyConfig
from interkube.server.http import HttpEndpoint
from interkube.server.plugin import Handler
from interkube.server.request import Request
from interkube.server.services import Services


class ReadyHandler(Handler):
    plugin = "ready"

    def __init__(self, cfg: ReadyConfig, endpoint: HttpEndpoint, services: Services) -> None:
        self.cfg = cfg
        self.endpoint = endpoint
        self.services = services

    def fast(self, req: Request) -> bytes | None:
        return self.next.fast(req)

    async def serve(self, req: Request) -> bytes:
        return await self.next.serve(req)

    async def _ready(self, request: web.Request) -> web.Response:
        missing = self.services.not_ready()
        if self.services.lameduck:
            missing = ["lameduck", *missing]
        if missing:
            return web.Response(status=503, text="\n".join(missing) + "\n")
        return web.Response(text="OK")

    async def start(self) -> None:
        await self.endpoint.add("/ready", self, self._ready)

    async def stop(self) -> None:
        await self.endpoint.remove(self)

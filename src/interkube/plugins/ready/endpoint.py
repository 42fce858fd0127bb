"""The ready endpoint: 200 when every part that reports readiness is ready, else 503 and a list."""

from __future__ import annotations

from aiohttp import web

from interkube.plugin.http import HttpEndpoint
from interkube.plugin.services import Services


class Ready:
    """One `ready` directive's route on the shared endpoint."""

    def __init__(self, endpoint: HttpEndpoint, services: Services) -> None:
        self.endpoint = endpoint
        self.services = services

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

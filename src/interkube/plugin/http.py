"""Small HTTP endpoints (health, ready, metrics) on aiohttp, shared per address.

Several plugins may serve on one address (CoreDNS users often put /health and /ready on the same
port), and a reload starts the new configuration's plugins before it stops the old ones. So an
endpoint holds routes by path with their *owners*: the newest owner of a path answers it, an
owner removes only its own routes, and the endpoint closes its socket when no route is left.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from interkube.errors import ListenerError
from interkube.pkg.shared import Kind
from interkube.plugin.services import Services

if TYPE_CHECKING:
    from interkube.plugin.setup import SetupContext

log = logging.getLogger("interkube.server")

RouteHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def parse_http_address(text: str, default_port: int) -> tuple[str, int]:
    """``[HOST]:PORT``, ``HOST:PORT``, ``:PORT`` or ``HOST`` -> (host, port); "" is every interface."""
    host, port = text, default_port
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"invalid address {text!r}")
        host, rest = text[1:end], text[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"invalid address {text!r}")
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        if not p.isdigit():
            raise ValueError(f"invalid port in {text!r}")
        port = int(p)
    elif text.count(":") > 1:
        raise ValueError(f"IPv6 addresses must be written in brackets: {text!r}")
    if not 0 <= port < 65536:
        raise ValueError(f"port out of range in {text!r}")
    if host == "localhost":
        host = "127.0.0.1"
    return host, port


class HttpEndpoint:
    """One listening address and the routes served on it."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.routes: dict[str, list[tuple[Any, RouteHandler]]] = {}
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._lock = asyncio.Lock()
        #: In a multi-worker server only worker 0 serves HTTP (see interkube.server.workers).
        self.disabled = False

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        owners = self.routes.get(request.path)
        if not owners:
            raise web.HTTPNotFound()
        return await owners[-1][1](request)

    async def add(self, path: str, owner: Any, handler: RouteHandler) -> None:
        if self.disabled:
            return
        self.routes.setdefault(path, []).append((owner, handler))
        async with self._lock:
            if self._runner is None:
                app = web.Application()
                app.router.add_route("*", "/{tail:.*}", self._dispatch)
                runner = web.AppRunner(app, access_log=None, handle_signals=False)
                await runner.setup()
                site = web.TCPSite(runner, self.host or None, self.port, reuse_address=True)
                try:
                    await site.start()
                except OSError as exc:
                    await runner.cleanup()
                    self.routes[path] = [r for r in self.routes[path] if r[0] is not owner]
                    raise ListenerError(f"cannot listen on {self}: {exc.strerror or exc}") from exc
                if self.port == 0:
                    self.port = runner.addresses[0][1]  # the one site's socket
                self._runner, self._site = runner, site

    async def remove(self, owner: Any) -> None:
        for path in list(self.routes):
            kept = [r for r in self.routes[path] if r[0] is not owner]
            if kept:
                self.routes[path] = kept
            else:
                del self.routes[path]
        if not self.routes:
            async with self._lock:
                if self._runner is not None and not self.routes:
                    await self._runner.cleanup()
                    self._runner = self._site = None


HTTP_ENDPOINT = Kind("HTTP endpoint", HttpEndpoint)


def endpoint(services: Services, address: str, default_port: int, where: SetupContext) -> HttpEndpoint:
    """The shared endpoint for ``address`` (``where`` is a SetupContext for errors)."""
    try:
        host, port = parse_http_address(address, default_port)
    except ValueError as exc:
        raise where.error(str(exc)) from None
    if port == 0:
        # Port 0 (tests): an ephemeral port of its own; the plugin reports which it got.
        ep = HttpEndpoint(host, port)
    else:
        ep = services.shared.get_or_create(HTTP_ENDPOINT, (host, port), lambda: HttpEndpoint(host, port))
    worker = services.worker
    ep.disabled = worker is not None and not worker.serves_http
    return ep

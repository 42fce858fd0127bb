"""The shared HTTP endpoint (interkube.plugin.http): addresses as CoreDNS writes them, several
plugins on one address, the newest owner of a path answering it (a reload starts the new
configuration before it stops the old), and the socket closed with its last route."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from interkube.plugin.http import HttpEndpoint, parse_http_address
from testkit.servers import free_port, http_get


@pytest.mark.parametrize(("text", "address"), [
    (":8080", ("", 8080)), ("127.0.0.1:9153", ("127.0.0.1", 9153)), ("[::1]:8181", ("::1", 8181)),
    ("[::1]", ("::1", 80)), ("localhost:8080", ("127.0.0.1", 8080)), ("127.0.0.1", ("127.0.0.1", 80)),
])
def test_addresses(text: str, address: tuple[str, int]) -> None:
    assert parse_http_address(text, 80) == address


@pytest.mark.parametrize(("text", "message"), [
    ("::1:8080", "must be written in brackets"), ("127.0.0.1:http", "invalid port"),
    ("127.0.0.1:70000", "out of range"), ("[::1", "invalid address"),
])
def test_address_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_http_address(text, 80)


def text(body: str):  # type: ignore[no-untyped-def]
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=body)
    return handler


async def test_owners_of_paths_on_one_address() -> None:
    port = free_port()
    ep = HttpEndpoint("127.0.0.1", port)
    old_health, new_health, metrics = object(), object(), object()
    url = f"http://127.0.0.1:{port}"
    await ep.add("/health", old_health, text("old"))
    await ep.add("/metrics", metrics, text("metrics"))
    assert await http_get(f"{url}/health") == (200, "old")
    await ep.add("/health", new_health, text("new"))  # the next configuration's
    assert await http_get(f"{url}/health") == (200, "new")
    await ep.remove(old_health)  # the old configuration stops: the new one keeps the path
    assert await http_get(f"{url}/health") == (200, "new")
    assert await http_get(f"{url}/metrics") == (200, "metrics")
    assert (await http_get(f"{url}/ready"))[0] == 404
    await ep.remove(new_health)
    await ep.remove(metrics)
    with pytest.raises(OSError):  # no route left: the socket is closed
        await asyncio.open_connection("127.0.0.1", port)

"""What the UDP listener's tests share: an endpoint on a loopback socket with a chain of the
test's own, and a client socket."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Iterator

from interkube.plugin.handler import Handler, link
from interkube.plugin.request import Route
from interkube.server.dispatch import Dispatcher
from interkube.server.listeners import Listener, ListenerOptions, UdpEndpoint

#: The `server` label of the endpoints' counts.
SERVER = "dns://udp-backlog-test:53"


def dispatcher(head: Handler) -> Dispatcher:
    return Dispatcher({".": (Route(".", SERVER), link([head]))})


@contextlib.asynccontextmanager
async def endpoint(head: Handler, options: ListenerOptions | None = None) -> AsyncIterator[UdpEndpoint]:
    """A UdpEndpoint serving ``head`` on a fresh loopback socket (this event loop's)."""
    listener = Listener("dns", "127.0.0.1", 0, dispatcher(head), options)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    ep = UdpEndpoint(listener, sock)
    try:
        yield ep
    finally:
        ep.close()


@contextlib.contextmanager
def client() -> Iterator[socket.socket]:
    """A non-blocking UDP socket on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        yield s

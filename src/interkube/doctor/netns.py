"""Sockets inside a named network namespace (``ip netns add NAME``), made from this process.

A thread that enters a namespace (setns) makes sockets there, and a socket stays in the namespace
it was made in; the doctor makes the socket in a short-lived thread, so that no other thread of
the process ever changes namespace, and uses it from the event loop like any other.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
import threading
from urllib.parse import urlsplit

_CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def socket_in(netns: str, family: int, kind: int) -> socket.socket:
    """A socket made inside network namespace ``netns``; OSError when it cannot be entered."""
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def make() -> None:
        try:
            target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                _setns(target)  # this thread only, and it ends right after
            finally:
                os.close(target)
            made.append(socket.socket(family, kind))
        except BaseException as exc:  # handed to the caller's thread
            failed.append(exc)

    thread = threading.Thread(target=make, name=f"netns {netns}")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return made[0]


async def http_get_in(netns: str, url: str, timeout: float) -> tuple[int, str]:
    """GET ``url`` (plain HTTP) from inside ``netns``: the status and the body."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket_in(netns, family, socket.SOCK_STREAM)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.sock_connect(sock, (host, port)), timeout)
        reader, writer = await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise
    try:
        writer.write(f"GET {parts.path or '/'} HTTP/1.0\r\nHost: {parts.netloc}\r\n\r\n".encode())
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    return (int(status[1]) if len(status) > 1 and status[1].isdigit() else 0), body.decode(errors="replace")

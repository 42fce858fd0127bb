"""UDP in batches: interkube's C helpers (``interkube/_udpfast.c``: recvmmsg, sendmmsg), or plain
socket calls where they are not built.

Shared by the listeners (queries in, answers out) and the upstream datagram exchanger (queries
out, answers in): both collect the datagrams of one event-loop pass and send them together.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import math
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger("interkube.server")

#: A datagram for a connected socket, or (datagram, address) for an unconnected one.
Datagram = bytes | tuple[bytes, Any]


class UdpFast(Protocol):
    """The C helpers, as ``interkube/_udpfast.c`` defines them (positional arguments only)."""

    def drain(self, fd: int, callback: Callable[[bytes, Any], object], rounds: int = 4, /) -> int:
        """Read datagrams in batches and pass each with its source address to ``callback``."""

    def drain_shed(self, fd: int, callback: Callable[[bytes, Any], object], rounds: int, keys: set[bytes],
                   backlog: deque[tuple[bytes, Any, float]], shed_from: int, limit: int,
                   memo: AnswerMemo | None, /) -> int:
        """As drain, but a datagram ``memo`` has an answer for gets it without ``callback``; and
        while ``len(backlog) >= shed_from``, a datagram whose bytes after the ID are in ``keys``
        is appended to ``backlog`` as ``(data, addr, monotonic time)`` instead of going to
        ``callback``, the oldest entry dropped first when ``backlog`` holds ``limit``; returns
        how many were dropped so."""

    def drain_answers(self, fd: int, pending: dict[int, tuple[Any, bytes, float]], rounds: int,
                      ignored: type[BaseException], /) -> int:
        """Read an upstream's answers from a connected socket, each to ``sink.set_result`` of the
        ``pending`` entry (sink, question, deadline) of its ID and question, taken out."""

    def send_batch(self, fd: int, items: list[Datagram], /) -> int:
        """Send ``items`` with sendmmsg; how many were sent."""

    def merge_plain(self, wire: bytes, question_end: int, opt: bytes, answers: list[Any],
                    queries: list[tuple[bytes, bytes]], local: int, types: bytes, /) -> bytes | None:
        """The merge plugin's union of plain answers, or None where the Python code must merge
        (see :func:`interkube.plugins.merge.combine.merge_answers`)."""

    def tally_setup(self, type_slots: bytes, size_buckets: bytes, duration_bounds: tuple[float, ...], /) -> None:
        """The tables ``tally`` counts with (see :mod:`interkube.plugins.prometheus.store`)."""

    def tally(self, by_route: dict[Any, Any], plugins: dict[Any, Any], req: object, resp: bytes, /) -> bool:
        """Count one answer; False when the Python code must count it instead."""


class Stamp(Protocol):
    """How long answers put in an :class:`AnswerMemo` with it hold: until :meth:`revoke` is called
    on it or on a parent, and while ``time.monotonic()`` is before every ``until`` on the way.
    Each answer sent with it adds 1 to ``counter[slot]`` (an ``array('q')``) on the way."""

    def __init__(self, parent: Stamp | None = None, until: float = math.inf, counter: Any = None,
                 slot: int = 0) -> None: ...

    def revoke(self) -> None: ...

    @property
    def live(self) -> bool: ...

    @property
    def until(self) -> float: ...


class AnswerMemo(Protocol):
    """Answers from memory that a UDP drain sends without calling back into Python, keyed by a
    query's bytes after its ID; at most ``capacity`` of them (see ``_udpfast.c``)."""

    def __init__(self, capacity: int) -> None: ...

    def put(self, query: bytes, response: bytes, stamp: Stamp, tally: Any = None, /) -> bool:
        """Send ``response`` (with each query's own ID) to the queries with ``query``'s bytes
        after the ID while ``stamp`` holds, each added to ``tally`` (an ``array('d')``: count,
        seconds, query and response bytes) if given; False: not kept."""

    def get(self, query: bytes, /) -> bytes | None:
        """What a drain would send for ``query`` now (counted as sent)."""

    def clear(self) -> None: ...

    def resize(self, capacity: int, /) -> None:
        """Forget every answer and hold up to ``capacity`` (rounded up to a power of two)."""

    def __len__(self) -> int: ...

    @property
    def capacity(self) -> int: ...

    @property
    def hits(self) -> int: ...


class _PyStamp:
    """:class:`Stamp` where the C helpers are not built: nothing reads it (no memo without them),
    but the handlers stamp their answers all the same."""

    __slots__ = ("parent", "until", "counter", "slot", "revoked")

    def __init__(self, parent: Stamp | None = None, until: float = math.inf, counter: Any = None,
                 slot: int = 0) -> None:
        self.parent = parent
        self.until = until
        self.counter = counter
        self.slot = slot
        self.revoked = False

    def revoke(self) -> None:
        self.revoked = True

    @property
    def live(self) -> bool:
        return not self.revoked and time.monotonic() < self.until and (self.parent is None or self.parent.live)


def _load() -> UdpFast | None:
    # Imported by name: the extension has no stub (the wheel ships no .pyi), so UdpFast types it.
    try:  # optional: a source install without a compiler runs the pure-Python loops
        return importlib.import_module("interkube._udpfast")
    except ImportError:  # pragma: no cover - exercised where the extension is not built
        return None


#: The C helpers, or None where they are not built or INTERKUBE_NO_UDPFAST is set (tests run
#: both paths; debugging).
_built = _load()
udpfast: UdpFast | None = None if os.environ.get("INTERKUBE_NO_UDPFAST") else _built

#: The stamp type handlers mark their answers from memory with (see interkube.server.dispatch).
StampType: Callable[..., Stamp] = _PyStamp if udpfast is None else getattr(udpfast, "Stamp")  # noqa: B009


def answer_memo(capacity: int) -> AnswerMemo | None:
    """A memo of answers the UDP drain sends itself, or None without the C helpers."""
    if udpfast is None:
        return None
    memo: AnswerMemo = getattr(udpfast, "AnswerMemo")(capacity)  # noqa: B009
    return memo


def send_batch(sock: socket.socket, out: list[Datagram]) -> None:
    """Send ``out``: datagrams on a connected socket, or (datagram, address) pairs.

    One sendmmsg with the C helper, else a system call each. Raises OSError as the first send
    that failed did (BlockingIOError for a full send buffer); what came after it is not sent,
    as UDP may drop it anyway.
    """
    if udpfast is not None:
        udpfast.send_batch(sock.fileno(), out)
        return
    for item in out:
        if isinstance(item, tuple):
            sock.sendto(*item)
        else:
            sock.send(item)


class Outbox:
    """The datagrams of one event-loop pass, sent together when the pass ends: one sendmmsg for
    all the answers (or queries) produced in it instead of a system call each.

    ``failed`` gets the OSError of a send that failed (the rest of that batch is not sent).
    Nothing is sent once the socket is closed.
    """

    __slots__ = ("failed", "items", "loop", "sock")

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop,
                 failed: Callable[[OSError], object]) -> None:
        self.sock = sock
        self.loop = loop
        self.failed = failed
        self.items: list[Datagram] = []

    def put(self, item: Datagram) -> None:
        if not self.items:
            held = _held
            if held is not None:
                held.append(self)  # sent when the reader's callback ends (see hold())
            else:
                self.loop.call_soon(self._send)
        self.items.append(item)

    def _send(self) -> None:
        out, self.items = self.items, []
        if not out or self.sock.fileno() < 0:  # a closed socket's fileno() is -1
            return
        try:
            send_batch(self.sock, out)
        except OSError as exc:
            self.failed(exc)


#: The outboxes filled during a socket's read callback that holds them (hold()), or None.
_held: list[Outbox] | None = None


def hold() -> list[Outbox] | None:
    """Called by a socket's read callback before it reads: the outboxes it fills (queries to an
    upstream read from a client, answers to clients read from an upstream) are sent when it
    calls :func:`release` with what this returned, not at the end of the event-loop pass.

    They leave as soon as the socket has nothing more to read instead of after the pass's other
    callbacks (the other sockets' reads, timers), and without a scheduled callback each (a
    forwarded query had two, one for the query and one for its answer: callgrind, some 4% of a
    query's instructions one at a time). Nested: None while another callback holds them, which
    sends them."""
    global _held
    if _held is not None:
        return None
    _held = []
    return _held


def release(held: list[Outbox] | None) -> None:
    """Send what the outboxes took since :func:`hold` returned ``held`` (None: nothing to do)."""
    global _held
    if held is None:
        return
    _held = None
    for box in held:
        try:
            box._send()
        except Exception:  # (a bug: the other outboxes still send theirs)
            log.exception("sending a batch of datagrams failed")

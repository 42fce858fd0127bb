"""forward's callback path: a UDP query sent from the listener's socket callback, its answer
relayed from the upstream socket's (see :mod:`interkube.plugin.later`).

The first attempt of a plain UDP query (a UDP client, no force_tcp, dns:// upstreams only, no
`next` to a following forward) is made here, as the slow path's loop would make it: the first
upstream of the policy's order that is not down, ``read_timeout`` to answer. A :class:`Flight`
waits in that upstream socket's ID table (no future, no task, no timer: the socket's deadline
sweep times it out). When the answer is the end of it, it goes to the client from the upstream
socket's read callback; otherwise (a timeout or error, a truncated answer to fetch over TCP, a
`failover` rcode with upstreams left) the query goes to the slow path, whose loop carries on from
this flight's state: the same attempts, upstream order and deadline as if it had started there.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from interkube.dns.wire import FLAG_TC
from interkube.errors import UpstreamError
from interkube.plugin.later import complete, defer, fall_back
from interkube.plugin.request import Request
from interkube.upstream.upstream import Upstream

if TYPE_CHECKING:
    from interkube.plugins.forward.handler import ForwardHandler

log = logging.getLogger("interkube.plugin.forward")

#: The event loop's clock, read without finding the loop: asyncio's loop.time() is
#: time.monotonic() (uvloop's is the same clock, in milliseconds).
now = time.monotonic


class Flight:
    """One query's first attempt on the callback path, and the state the slow path resumes.

    The slow path's loop variables after this attempt (see ForwardHandler._forward): the order
    ``ups`` and the index ``k`` of the upstream tried (the down ones before it were skipped),
    and, set when the query goes to the slow path, ``attempts``, ``failovers`` and ``error``;
    ``truncated`` says that the answer came truncated, to be fetched over TCP first.
    """

    __slots__ = ("handler", "req", "ups", "k", "started", "finished", "attempts", "failovers", "error",
                 "truncated")

    def __init__(self, handler: ForwardHandler, req: Request, ups: list[Upstream], k: int, started: float) -> None:
        self.handler = handler
        self.req = req
        self.ups = ups
        self.k = k
        self.started = started
        self.finished = False

    @property
    def up(self) -> Upstream:
        return self.ups[self.k]

    @property
    def deadline(self) -> float:
        return self.started + self.handler.deadline_seconds

    # -- what the upstream socket calls (AnswerSink) ----------------------------------------------

    def done(self) -> bool:
        return self.finished

    def set_result(self, resp: bytes) -> None:
        self.finished = True
        handler = self.handler
        handler.inflight -= 1
        try:
            if resp[2] & (FLAG_TC >> 8):
                self._slow(truncated=True)  # the slow path fetches the whole answer over TCP
                return
            rcode = resp[3] & 0x0F
            self.ups[self.k].stats.observe(rcode, now() - self.started)
            failover = handler.cfg.failover_rcodes
            if failover and rcode in failover and len(handler.upstreams) > 1:
                self._slow(failovers=1)
                return
            req = self.req
            req.answered_by = "forward"
            complete(req, req.wire[:2] + resp[2:])
        except Exception:  # called from the socket's read callback: never raise into it
            log.exception("forward: relaying an answer failed")

    def set_exception(self, exception: BaseException) -> None:
        self.finished = True
        handler = self.handler
        handler.inflight -= 1
        up = self.ups[self.k]
        up.stats.failures += 1
        try:
            up.kick_health_check(handler.cfg.force_tcp)
            self._slow(attempts=1, error=exception)
        except Exception:
            log.exception("forward: handing a failed query to the slow path failed")

    def _slow(self, *, attempts: int = 0, failovers: int = 0, error: BaseException | None = None,
              truncated: bool = False) -> None:
        self.attempts = attempts
        self.failovers = failovers
        self.error = error
        self.truncated = truncated
        fall_back(self.req, self)


def launch(handler: ForwardHandler, req: Request, question: bytes) -> bool:
    """Send ``req``'s first attempt from the callback; False (nothing done) when the slow path
    must run instead: every upstream is down (the slow path picks one at random), or no socket
    can be opened."""
    ups = handler.upstreams
    for up in ups:
        if up.fails:  # (cheaper than asking each whether it is down)
            if all(u.down for u in ups):
                return False
            break
    order = handler.order()
    k = 0
    up = order[0]
    while up.fails and up.down:
        k += 1
        up = order[k]
    udp = up.udp
    assert udp is not None  # callback_path() checked
    started = now()
    flight = Flight(handler, req, order, k, started)
    try:
        udp.send_to(req.wire, started + handler.attempt_seconds, question, flight)
    except UpstreamError:  # no socket: the slow path tries (and reports) again
        return False
    up.stats.requests += 1
    handler.inflight += 1
    defer(req)
    return True


__all__ = ["Flight", "launch"]

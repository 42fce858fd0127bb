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

import asyncio
import logging
from typing import TYPE_CHECKING

from interkube.dns.wire import FLAG_TC, rcode_of
from interkube.errors import UpstreamError
from interkube.plugin.later import complete, defer, fall_back
from interkube.plugin.request import Request
from interkube.upstream.upstream import Upstream

if TYPE_CHECKING:
    from interkube.plugins.forward.handler import ForwardHandler

log = logging.getLogger("interkube.plugin.forward")


class Flight:
    """One query's first attempt on the callback path, and the state the slow path resumes.

    ``ups``, ``i``, ``skipped``, ``attempts``, ``failovers``, ``deadline`` and ``error`` are the
    slow path loop's variables after this attempt (see ForwardHandler._forward); ``truncated``
    says that the attempt's answer came truncated, to be fetched over TCP first.
    """

    __slots__ = ("handler", "req", "up", "ups", "i", "skipped", "attempts", "failovers", "started",
                 "deadline", "timeout", "error", "truncated", "finished")

    def __init__(self, handler: ForwardHandler, req: Request, ups: list[Upstream], k: int,
                 started: float, deadline: float, timeout: float) -> None:
        self.handler = handler
        self.req = req
        self.ups = ups
        self.up = ups[k]
        self.i = k + 1
        self.skipped = k  # the down upstreams ahead of it in the order
        self.attempts = 0
        self.failovers = 0
        self.started = started
        self.deadline = deadline
        self.timeout = timeout
        self.error: BaseException | None = None
        self.truncated = False
        self.finished = False

    # -- what the upstream socket calls (AnswerSink) ----------------------------------------------

    def done(self) -> bool:
        return self.finished

    def set_result(self, resp: bytes) -> None:
        self.finished = True
        handler = self.handler
        handler.inflight -= 1
        up = self.up
        try:
            if resp[2] & (FLAG_TC >> 8):
                self.truncated = True  # the slow path fetches the whole answer over TCP
                fall_back(self.req, self)
                return
            rcode = rcode_of(resp)
            up.stats.observe(rcode, asyncio.get_running_loop().time() - self.started)
            failover = handler.cfg.failover_rcodes
            if failover and rcode in failover and len(handler.upstreams) > 1:
                self.failovers = 1
                fall_back(self.req, self)
                return
            req = self.req
            req.answered_by = "forward"
            complete(req, req.wire[:2] + resp[2:])
        except Exception:  # called from the socket's read callback: never raise into it
            log.exception("forward: relaying an answer failed")

    def set_exception(self, exception: BaseException) -> None:
        self.finished = True
        self.handler.inflight -= 1
        up = self.up
        up.stats.failures += 1
        try:
            up.kick_health_check(self.handler.cfg.force_tcp)
            self.attempts = 1
            self.error = exception
            fall_back(self.req, self)
        except Exception:
            log.exception("forward: handing a failed query to the slow path failed")


def launch(handler: ForwardHandler, req: Request, question: bytes) -> bool:
    """Send ``req``'s first attempt from the callback; False (nothing done) when the slow path
    must run instead: every upstream is down (the slow path picks one at random), or no socket
    can be opened."""
    ups = handler.upstreams
    if any(up.fails for up in ups) and all(up.down for up in ups):
        return False
    order = handler.order()
    k = 0
    while order[k].down:
        k += 1
    up = order[k]
    udp = up.udp
    assert udp is not None  # callback_path() checked
    now = asyncio.get_running_loop().time()
    timeout = min(handler.cfg.read_timeout, handler.deadline_seconds)
    flight = Flight(handler, req, order, k, now, now + handler.deadline_seconds, timeout)
    try:
        udp.send_to(req.wire, timeout, question, flight)
    except UpstreamError:  # no socket: the slow path tries (and reports) again
        return False
    up.stats.requests += 1
    handler.inflight += 1
    defer(req)
    return True


__all__ = ["Flight", "launch"]

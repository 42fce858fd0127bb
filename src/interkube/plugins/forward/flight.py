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
from bisect import bisect_left
from typing import TYPE_CHECKING

from interkube.dns.wire import FLAG_TC
from interkube.errors import UpstreamError
from interkube.pkg.metrics import DURATION_BUCKETS
from interkube.plugin.later import complete, defer, fall_back
from interkube.plugin.request import Request
from interkube.upstream.upstream import Upstream

if TYPE_CHECKING:
    from interkube.plugins.forward.handler import ForwardHandler

log = logging.getLogger("interkube.plugin.forward")

#: The event loop's clock, read without finding the loop: asyncio's loop.time() is
#: time.monotonic() (uvloop's is the same clock, in milliseconds).
now = time.monotonic
#: FLAG_TC in the third byte of a message.
_TC_BIT = FLAG_TC >> 8
_new_flight = object.__new__


class Flight:
    """One query's first attempt on the callback path, and the state the slow path resumes.

    The slow path's loop variables after this attempt (see ForwardHandler._forward): the order
    ``ups`` and the index ``k`` of the upstream tried (the down ones before it were skipped),
    and, set when the query goes to the slow path, ``attempts``, ``failovers`` and ``error``;
    ``truncated`` says that the answer came truncated, to be fetched over TCP first.
    """

    __slots__ = ("handler", "req", "ups", "k", "started", "finished", "attempts", "failovers", "error",
                 "truncated")

    # Made by launch() without an __init__ (a Python frame less per query): these it sets.
    handler: ForwardHandler
    req: Request
    ups: list[Upstream]
    k: int
    started: float
    finished: bool
    # These are set when the query goes to the slow path (_slow).
    attempts: int
    failovers: int
    error: BaseException | None
    truncated: bool

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
            if resp[2] & _TC_BIT:
                self._slow(truncated=True)  # the slow path fetches the whole answer over TCP
                return
            rcode = resp[3] & 0x0F
            seconds = now() - self.started
            stats = self.ups[self.k].stats
            e = stats.responses.get(rcode)
            if e is None:
                stats.observe(rcode, seconds)  # the first answer with this rcode
            else:  # (observe() inline: once per answer)
                e[0] += 1
                e[1] += seconds
                e[2 + bisect_left(DURATION_BUCKETS, seconds)] += 1
            failover = handler.cfg.failover_rcodes
            if failover and rcode in failover and len(handler.upstreams) > 1:
                self._slow(failovers=1)
                return
            req = self.req
            req.answered_by = "forward"
            pending = req.later
            # complete() puts the client's ID in: the handlers' steps, if any, get it here already
            # (as forward's answer on the fast path has it); else that is one copy fewer.
            complete(req, req.wire[:2] + resp[2:] if pending is not None and pending.after else resp)
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
    """Send ``req``'s first attempt from the callback (``question``: its question section);
    False (nothing done) when the slow path must run instead: every upstream is down (the slow
    path picks one at random), or no socket can be opened."""
    ups = handler.upstreams
    for up in ups:
        if up.fails:  # (cheaper than asking each whether it is down)
            if all(u.down for u in ups):
                return False
            break
    order = ups if len(ups) == 1 else handler.order()
    k = 0
    up = order[0]
    while up.fails and up.down:
        k += 1
        up = order[k]
    udp = up.udp
    assert udp is not None  # callback_path() checked
    started = now()
    # (Flight's __init__ inline: no Python frame for it, once per query.)
    flight = _new_flight(Flight)
    flight.handler = handler
    flight.req = req
    flight.ups = order
    flight.k = k
    flight.started = started
    flight.finished = False
    try:
        udp.send_to(req.wire, started + handler.attempt_seconds, question, flight)
    except UpstreamError:  # no socket: the slow path tries (and reports) again
        return False
    up.stats.requests += 1
    handler.inflight += 1
    defer(req)
    return True


__all__ = ["Flight", "launch"]

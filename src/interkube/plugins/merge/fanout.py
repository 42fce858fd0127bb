"""merge's callback path: a UDP client's merged query fanned out from the listener's socket
callback, the clusters' answers collected in the upstream sockets' callbacks, and the merged
answer sent from the last one's (see :mod:`interkube.plugin.later`).

The same queries, timeouts and outcomes as the slow path's _Flight (merge has no retries): each
cluster's question waits in its upstream socket's ID table as a :class:`Leg` (no future, no
task, no timer), and times out there with the socket's deadline sweep. A truncated UDP answer
is fetched over TCP in a task, as on the slow path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from interkube.dns.wire import FLAG_TC, RCODE_SERVFAIL, error_response
from interkube.errors import UpstreamError, UpstreamTimeout
from interkube.plugin.later import complete, defer
from interkube.plugin.request import Request
from interkube.plugins.merge.combine import ClusterReply
from interkube.upstream.upstream import Upstream

log = logging.getLogger("interkube.plugin.merge")

#: (the request, the clusters' replies in order) -> the merged answer
Merge = Callable[[Request, list[ClusterReply]], bytes]
#: One cluster's question: (cluster name, lower-cased zone, upstream, query wire, lower-cased question)
LegSpec = tuple[str, bytes, Upstream, bytes, bytes]
#: What a reply's place holds until it comes (never merged: the merge waits for every reply).
_NOT_YET = ClusterReply("", b"", None, "not yet")


class Fanout:
    """One merged query in flight: each cluster's question (``legs``), the replies as they
    come, merged when all are in."""

    __slots__ = ("req", "legs", "timeout", "replies", "waiting", "merge")

    def __init__(self, req: Request, legs: list[LegSpec], timeout: float, merge: Merge) -> None:
        self.req = req
        self.legs = legs
        self.timeout = timeout
        self.replies = [_NOT_YET] * len(legs)
        self.waiting = len(legs)
        self.merge = merge

    def reply(self, index: int, reply: ClusterReply) -> None:
        self.replies[index] = reply
        self.waiting -= 1
        if self.waiting:
            return
        req = self.req
        try:
            resp = self.merge(req, self.replies)
        except Exception:  # as the slow path's dispatcher answers a handler's failure
            log.exception("merge: merging the clusters' answers failed; answering SERVFAIL")
            resp = error_response(req.wire, RCODE_SERVFAIL, req.query)
        complete(req, resp)


class Leg:
    """One cluster's question (``fanout.legs[index]``) in its upstream socket's ID table (an AnswerSink)."""

    __slots__ = ("fanout", "index", "finished")

    def __init__(self, fanout: Fanout, index: int) -> None:
        self.fanout = fanout
        self.index = index
        self.finished = False

    def done(self) -> bool:
        return self.finished

    def set_result(self, resp: bytes) -> None:
        self.finished = True
        try:
            if resp[2] & (FLAG_TC >> 8):
                task = asyncio.get_running_loop().create_task(self._over_tcp())
                _tcp_retries.add(task)
                task.add_done_callback(_tcp_retries.discard)
                return
            fanout = self.fanout
            cluster, zone, _upstream, _wire, question = fanout.legs[self.index]
            fanout.reply(self.index, ClusterReply.read(cluster, zone, resp, question))
        except Exception:  # called from the socket's read callback: never raise into it
            log.exception("merge: reading a cluster's answer failed")

    def set_exception(self, exception: BaseException) -> None:
        self.finished = True
        try:
            self.fanout.reply(self.index, self._failed(exception))
        except Exception:
            log.exception("merge: a cluster's failure could not be recorded")

    def _failed(self, exc: BaseException) -> ClusterReply:
        cluster, zone = self.fanout.legs[self.index][:2]
        if isinstance(exc, UpstreamTimeout):
            return ClusterReply(cluster, zone, None, "timeout")
        reason = exc.reason if isinstance(exc, UpstreamError) else str(exc)
        return ClusterReply(cluster, zone, None, f"error: {reason}")

    async def _over_tcp(self) -> None:
        """The whole answer over TCP, as the slow path fetches a truncated one."""
        fanout = self.fanout
        cluster, zone, upstream, wire, question = fanout.legs[self.index]
        try:
            resp = await upstream.exchange(wire, True, fanout.timeout)
        except UpstreamError as exc:
            reply = self._failed(exc)
        else:
            reply = ClusterReply.read(cluster, zone, resp, question)
        fanout.reply(self.index, reply)


#: The TCP fetches of truncated answers in flight (a task must be referenced until it ends).
_tcp_retries: set[asyncio.Task[None]] = set()


def launch(req: Request, legs: list[LegSpec], timeout: float, merge: Merge) -> None:
    """Send every cluster's question now (``legs``, see :data:`LegSpec`); ``merge`` makes the
    answer once all are in. A cluster whose socket cannot be opened counts as its error, as on
    the slow path (in the next callback: the handlers ahead register their steps when this
    returns)."""
    defer(req)
    fanout = Fanout(req, legs, timeout, merge)
    deadline = time.monotonic() + timeout  # the loop's clock (see interkube.plugins.forward.flight)
    for index, (_cluster, _zone, upstream, wire, question) in enumerate(legs):
        leg = Leg(fanout, index)
        udp = upstream.udp
        assert udp is not None  # the handler checked
        try:
            udp.send_to(wire, deadline, question, leg)
        except UpstreamError as exc:
            asyncio.get_running_loop().call_soon(leg.set_exception, exc)

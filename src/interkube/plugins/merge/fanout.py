"""merge's callback path: a UDP client's merged query fanned out from the listener's socket
callback, the clusters' answers collected in the upstream sockets' callbacks, and the merged
answer sent from the last one's (see :mod:`interkube.plugin.later`).

The same queries, timeouts and outcomes as the slow path's _Flight (merge has no retries): each
cluster's question waits in its upstream socket's ID table as a :class:`Leg` (no future, no
task, no timer), and times out there with the socket's deadline sweep. A truncated UDP answer
is fetched over TCP in a task, as on the slow path.

Per query this makes a :class:`Fanout` (with its list of answers) and a :class:`Leg` per
cluster, and nothing else until the last answer is in: what is fixed for the handler (each
cluster's name, zone, upstream and its send) is in its :class:`Plan`, the queries are
:func:`cluster_queries`' list (one tuple for all the clusters of one zone), and an answer is
kept as the bytes that came; the merge reads them all at once (:func:`interkube.plugins.merge.combine.merge_answers`).
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
from interkube.plugins.merge.combine import Answer, ClusterReply
from interkube.upstream.transport import AnswerSink
from interkube.upstream.upstream import Upstream

log = logging.getLogger("interkube.plugin.merge")

#: (the request, each cluster's answer in order, each cluster's (query wire, lower-cased
#: question)) -> the merged answer
Merge = Callable[[Request, list[Answer], list[tuple[bytes, bytes]]], bytes]
#: An upstream's UDP send (DatagramExchanger.send_to): (wire, deadline, question, sink).
Send = Callable[[bytes, float, bytes, AnswerSink], None]


class Plan:
    """What the fan-out of one handler needs of its clusters, fixed when it is built: each
    cluster's name, lower-cased zone and upstream, and the UDP send of that upstream, in order."""

    __slots__ = ("clusters", "sends", "timeout", "merge")

    def __init__(self, clusters: list[tuple[str, bytes, Upstream]], timeout: float, merge: Merge) -> None:
        self.clusters = clusters
        sends: list[Send] = []
        for _name, _zone, upstream in clusters:
            udp = upstream.udp
            assert udp is not None  # the handler uses the callback path only with UDP upstreams
            sends.append(udp.send_to)
        self.sends = sends
        self.timeout = timeout
        self.merge = merge


class Fanout:
    """One merged query in flight: each cluster's query and answer (None until it comes), merged
    when all are in."""

    __slots__ = ("req", "plan", "queries", "answers", "waiting")

    # Made by launch() without an __init__ (a Python frame less per query): these it sets.
    req: Request
    plan: Plan
    #: Each cluster's (query wire, lower-cased question), as cluster_queries() made them.
    queries: list[tuple[bytes, bytes]]
    #: Each cluster's answer: the bytes that came, or a ClusterReply (a failure, an answer that
    #: came over TCP); None until it comes.
    answers: list[Answer | None]
    waiting: int

    def reply(self, index: int, answer: Answer) -> None:
        self.answers[index] = answer
        self.waiting -= 1
        if not self.waiting:
            self.finish()

    def finish(self) -> None:
        """Every answer is in: merge them and send the merged answer."""
        req = self.req
        try:
            resp = self.plan.merge(req, self.answers, self.queries)  # type: ignore[arg-type]  # (no None left)
        except Exception:  # as the slow path's dispatcher answers a handler's failure
            log.exception("merge: merging the clusters' answers failed; answering SERVFAIL")
            resp = error_response(req.wire, RCODE_SERVFAIL, req.query)
        complete(req, resp)


class Leg:
    """One cluster's question (``fanout.queries[index]``) in its upstream socket's ID table (an
    AnswerSink). The socket takes it out of the table before it calls it, and calls it once."""

    __slots__ = ("fanout", "index")

    # Made by launch() without an __init__.
    fanout: Fanout
    index: int

    def done(self) -> bool:
        return False  # (out of its table before it is called, and called once: never done there)

    def set_result(self, resp: bytes) -> None:
        try:
            if resp[2] & (FLAG_TC >> 8):
                task = asyncio.get_running_loop().create_task(self._over_tcp())
                _tcp_retries.add(task)
                task.add_done_callback(_tcp_retries.discard)
                return
            # (Fanout.reply inline: once per answer.) Read with the others' when all are in.
            fanout = self.fanout
            fanout.answers[self.index] = resp
            fanout.waiting -= 1
            if not fanout.waiting:
                fanout.finish()
        except Exception:  # called from the socket's read callback: never raise into it
            log.exception("merge: recording a cluster's answer failed")

    def set_exception(self, exception: BaseException) -> None:
        try:
            self.fanout.reply(self.index, self._failed(exception))
        except Exception:
            log.exception("merge: a cluster's failure could not be recorded")

    def _failed(self, exc: BaseException) -> ClusterReply:
        cluster, zone, _upstream = self.fanout.plan.clusters[self.index]
        if isinstance(exc, UpstreamTimeout):
            return ClusterReply(cluster, zone, None, "timeout")
        reason = exc.reason if isinstance(exc, UpstreamError) else str(exc)
        return ClusterReply(cluster, zone, None, f"error: {reason}")

    async def _over_tcp(self) -> None:
        """The whole answer over TCP, as the slow path fetches a truncated one."""
        fanout = self.fanout
        index = self.index
        cluster, zone, upstream = fanout.plan.clusters[index]
        wire, question = fanout.queries[index]
        try:
            resp = await upstream.exchange(wire, True, fanout.plan.timeout)
        except UpstreamError as exc:
            reply = self._failed(exc)
        else:
            reply = ClusterReply.read(cluster, zone, resp, question)
        fanout.reply(index, reply)


#: The TCP fetches of truncated answers in flight (a task must be referenced until it ends).
_tcp_retries: set[asyncio.Task[None]] = set()

_new = object.__new__


def launch(req: Request, plan: Plan, queries: list[tuple[bytes, bytes]]) -> None:
    """Send every cluster's query now (``queries``: each cluster's (wire, lower-cased question),
    in ``plan``'s order); ``plan.merge`` makes the answer once all are in. A cluster whose socket
    cannot be opened counts as its error, as on the slow path (in the next callback: the
    handlers ahead register their steps when this returns)."""
    defer(req)
    n = len(queries)
    # (Fanout's and Leg's __init__ inline: no Python frame for them, four per query.)
    fanout = _new(Fanout)
    fanout.req = req
    fanout.plan = plan
    fanout.queries = queries
    fanout.answers = [None] * n
    fanout.waiting = n
    deadline = time.monotonic() + plan.timeout  # the loop's clock (see interkube.plugins.forward.flight)
    index = 0
    for send in plan.sends:
        leg = _new(Leg)
        leg.fanout = fanout
        leg.index = index
        wire, question = queries[index]
        try:
            send(wire, deadline, question, leg)
        except UpstreamError as exc:
            asyncio.get_running_loop().call_soon(leg.set_exception, exc)
        index += 1

"""Answers that come later: the callback path of UDP forwarding (issue 18).

A plain UDP query forwarded to a UDP upstream needs no coroutine: the forward handler's fast()
sends it from the listener's socket callback (the upstream socket's outbox, one sendmmsg per
pass) and returns :data:`~interkube.plugin.handler.LATER`; the upstream socket's own drain
callback reads the answer and hands it to :func:`complete`, which sends it to the client through
the request's ``replier`` (the UDP listener: its outbox, one sendmmsg per pass). No task, future
or timer per query: the upstream socket's ID table and its one sweep of deadlines do the waiting.

What the handlers ahead of forward do to an answer on the fast path (cache stores it, log logs
it, prometheus counts it, loadbalance shuffles it), they register with :func:`after` when the
next handler returns LATER; :func:`complete` runs those steps, innermost first, as the fast path
would have run them when the answer came back. A handler that cannot do so keeps the handlers
behind it off the callback path (see :func:`interkube.plugin.handler.passes_later`).

Everything that is not the plain case goes back to the slow path with :func:`fall_back`: the
whole chain's serve() runs for the request (its cache miss, log line and counts made there, as
for any slow query), and the forward handler carries on where the callback path stopped (a
timeout, a truncated answer to fetch over TCP, a `failover` rcode) with what it recorded in
``Pending.resume``: the same attempts and deadline as a query that was on the slow path from the
start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from interkube.dns.wire import CLASSIC_UDP_LIMIT, RCODE_SERVFAIL, error_response, truncated
from interkube.plugin.request import Request

log = logging.getLogger("interkube.server")

#: What a handler does to an answer that came later: the answer in, what to send out.
AfterStep = Callable[[Request, bytes], bytes]


class Replier(Protocol):
    """Where a request's later answer goes: the listener it came in on."""

    def reply(self, req: Request, resp: bytes) -> None:
        """Send ``resp`` (final: ID, truncation and every handler's step applied) to the client."""

    def slow(self, req: Request) -> None:
        """Run the slow path (the dispatcher's serve()) for ``req`` and send what it answers."""


class Pending:
    """A request's answer to come: the handlers' steps for it, and the slow path's resume point."""

    __slots__ = ("after", "resume")

    def __init__(self) -> None:
        self.after: list[AfterStep] | None = None
        #: What the handler that went to the callback path left for its serve() (its own type).
        self.resume: object = None


def defer(req: Request) -> Pending:
    """Commit ``req`` to the callback path (its handler then returns LATER)."""
    # (Pending's __init__ inline: no Python frame for it, once per query forwarded so.)
    pending = req.later = _new_pending(Pending)
    pending.after = None
    pending.resume = None
    return pending


_new_pending = object.__new__


def after(req: Request, step: AfterStep) -> None:
    """Do ``step`` to ``req``'s answer when it comes (called by a handler whose next one
    returned LATER; the innermost handler's step runs first)."""
    pending = req.later
    assert pending is not None, "LATER without defer()"
    if pending.after is None:
        pending.after = [step]
    else:
        pending.after.append(step)


def complete(req: Request, resp: bytes) -> None:
    """The answer came: apply the handlers' steps, the client's ID and the UDP size limit, as
    the dispatcher does on the fast path, and send it."""
    pending, req.later = req.later, None
    if pending is not None and pending.after:
        try:
            for step in pending.after:
                resp = step(req, resp)
        except Exception:  # a bug in a handler must not take the upstream socket's callback down
            log.exception("handler failed on the callback path; answering SERVFAIL")
            resp = error_response(req.wire, RCODE_SERVFAIL, req.query)
    if not resp:
        return  # a handler chose to send nothing
    wire = req.wire
    if resp[0] != wire[0] or resp[1] != wire[1]:  # (bytes compared without two copies)
        resp = wire[:2] + resp[2:]
    # (No answer of 512 bytes or less is ever cut: the property is not read for those.)
    if len(resp) > CLASSIC_UDP_LIMIT and req.proto == "udp" and len(resp) > req.query.udp_limit:
        resp = truncated(resp, req.query)
    replier = req.replier
    if replier is not None:
        replier.reply(req, resp)


def fall_back(req: Request, resume: object) -> None:
    """Give ``req`` to the slow path: the steps registered are dropped (every handler's serve()
    runs instead), and ``resume`` is what its handler's serve() carries on from."""
    pending = Pending()
    pending.resume = resume
    req.later = pending
    replier = req.replier
    if replier is not None:
        replier.slow(req)


def take_resume(req: Request) -> object:
    """What the callback path left for the slow path (None if nothing), taken once."""
    pending = req.later
    if pending is None:
        return None
    req.later = None
    return pending.resume

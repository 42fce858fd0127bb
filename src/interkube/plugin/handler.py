"""The query chain: a handler knows the next one (``self.next``) and answers on two paths.

* ``fast(req) -> bytes | None`` runs synchronously inside the socket callback. A handler that
  can answer from memory returns the response; one that has nothing to say passes the query on,
  which is what the base class does. A handler that has to wait for anything (an upstream, a
  lock) returns :data:`SLOW`, and the whole chain then runs again on the slow path. The fast
  path therefore has no side effects until a handler commits to an answer, and log/metrics
  handlers record only answers that came back. A handler that sends a UDP query on from the
  socket callback returns :data:`LATER` (the *callback path*, :mod:`interkube.plugin.later`):
  its answer comes from another socket's callback, and a handler in front that does something
  to answers registers that step for it (see :func:`passes_later`).
* ``async serve(req) -> bytes`` is the general path; it may await upstreams and may raise a
  :class:`~interkube.errors.DnsError` (an ``errors`` handler earlier in the chain logs it; the
  server turns it into SERVFAIL).

Responses are wire bytes throughout: upstream answers pass through untouched, and answers built
from memory are pre-encoded templates (see :mod:`interkube.dns.wire`). Empty bytes mean "send
nothing" (acl's drop).

A handler does only this. Work that lives beside the queries (timers, watches, endpoints) is
started and stopped by hooks its setup registers (see :mod:`interkube.plugin.setup`).
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Callable
from typing import Any, ClassVar, Final, TypeVar

from interkube.dns.wire import RCODE_SERVFAIL, error_response
from interkube.plugin.request import Request

_Fast = TypeVar("_Fast", bound=Callable[..., Any])

#: What ``fast()`` returns to ask for the slow path ("I must wait; call my serve()").
SLOW: Final = None

#: Whether chains may answer on the callback path (LATER); INTERKUBE_NO_CALLBACK_PATH=1 turns it
#: off for a process, so that benchmarks measure before and after in one run (and for debugging).
CALLBACK_PATH: Final = not os.environ.get("INTERKUBE_NO_CALLBACK_PATH")


class Later(bytes):
    """The type of :data:`LATER` (empty bytes: a listener that knows nothing of it sends nothing)."""


#: What ``fast()`` returns when the answer will come later, on the callback path (a UDP query
#: forwarded from the socket callback: see :mod:`interkube.plugin.later`). Only a handler whose
#: ``later_ok`` is set returns it, and only for a request with a ``replier``.
LATER: Final = Later()


def passes_later(fast: _Fast) -> _Fast:
    """Mark a ``fast`` method that copes with :data:`LATER` from the next handler: it registers
    what it does to an answer with :func:`interkube.plugin.later.after` instead of doing it now
    (or clears ``req.replier`` before asking the next handler). A handler whose class overrides
    fast() without this mark keeps every handler behind it off the callback path."""
    fast.passes_later = True  # type: ignore[attr-defined]
    return fast


class Streamed(bytes):
    """A response that more messages follow on the same connection (a zone transfer, RFC 5936).

    The bytes are the first message, so every handler and listener reads it as the one response
    it knows; the DNS-over-TCP and DNS-over-TLS listeners then write each message of ``more`` in
    order, as the client takes them, and close ``more`` when the connection goes. A handler that
    returns one answers only over those (``req.proto`` tcp or tls, not from a DoH route): another
    transport sends the first message alone. Built on the slow path only.
    """

    more: AsyncGenerator[bytes, None]

    def __new__(cls, first: bytes, more: AsyncGenerator[bytes, None]) -> Streamed:
        response = super().__new__(cls, first)
        response.more = more
        return response


class Handler:
    """Base class of every handler in a chain: passes every query to the next one."""

    #: The plugin name; used in logs, metrics ("plugin" label) and readiness.
    plugin: ClassVar[str] = ""
    next: Handler
    #: Set by link(): whether every handler ahead of this one in its chain passes LATER on (see
    #: passes_later), so that this one may answer on the callback path.
    later_ok: bool = False
    #: Whether a chain of such handlers may have its answers sent from the UDP answer memo
    #: (interkube.server.dispatch), which skips the whole chain for a query whose answer left
    #: it with a stamp (``req.memo``). True only where, for every such query, fast() did nothing
    #: the memo skips (no log line, no count the stamp does not keep, no client's address read)
    #: and either answered setting ``req.memo`` to a stamp that every change of what the answer
    #: was made from revokes, or passed the query on by its bytes alone and left the answer as
    #: it came (else it sets ``req.memo`` to None after the next one returns). A handler whose
    #: own answers never carry a stamp may do anything for those.
    memo_safe: ClassVar[bool] = False

    def fast(self, req: Request) -> bytes | None:
        """Answer synchronously from memory, return SLOW for the slow path, or pass on."""
        return self.next.fast(req)

    async def serve(self, req: Request) -> bytes:
        """Answer the request (the general path)."""
        return await self.next.serve(req)


class Terminal(Handler):
    """The end of every chain: a query that no handler answered gets SERVFAIL, as in CoreDNS."""

    plugin = "chain"
    memo_safe = True  # (its SERVFAIL sets no stamp)

    def fast(self, req: Request) -> bytes:
        return error_response(req.wire, RCODE_SERVFAIL, req.query)

    async def serve(self, req: Request) -> bytes:
        return self.fast(req)


def link(handlers: list[Handler]) -> Handler:
    """Chain handlers in order and return the head; the last one's next is a Terminal."""
    nxt: Handler = Terminal()
    for h in reversed(handlers):
        h.next = nxt
        nxt = h
    ok = CALLBACK_PATH
    for h in handlers:
        h.later_ok = ok
        fast = type(h).fast
        ok = ok and (fast is Handler.fast or getattr(fast, "passes_later", False))
    return nxt


__all__ = ["LATER", "SLOW", "Handler", "Later", "Streamed", "Terminal", "link", "passes_later"]

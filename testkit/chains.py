"""A plugin's handler as `interkube serve` sets it up, in process and without sockets, for tests
that call its methods on queries they write::

    handler = chain_handler(f"example.org:53 {{\\n file {path}\\n}}\\n", FileHandler)
    answer = handler.fast(request(dns.message.make_query("www.example.org.", "A").to_wire()))
"""

from __future__ import annotations

from typing import Any, TypeVar

import pytest

from interkube.corefile.parser import parse_text
from interkube.dns.wire import parse_query
from interkube.plugin import answers
from interkube.plugin.handler import Handler, Terminal
from interkube.plugin.request import Request
from interkube.plugin.services import Services
from interkube.server.runtime import build

H = TypeVar("H", bound=Handler)


def chain_handler(corefile: str, cls: type[H]) -> H:
    """The first handler of type ``cls`` in the chain of a Corefile with one server block."""
    built = build(parse_text(corefile), "test", Services())
    [chains] = built.chains.values()
    [(_, handler)] = chains.values()
    while not isinstance(handler, cls):
        if isinstance(handler, Terminal):
            raise LookupError(f"no {cls.__name__} in the chain")
        handler = handler.next
    return handler


def request(wire: bytes) -> Request:
    """A UDP request for ``wire`` (a query the fast parser takes) from 127.0.0.1."""
    query = parse_query(wire)
    assert query is not None, "not a query the fast path takes"
    return Request(wire, query, ("127.0.0.1", 5353), "udp")


def forbid_builds(monkeypatch: pytest.MonkeyPatch, handler: answers.MemoryHandler[Any]) -> None:
    """Make ``handler``'s build() fail the test and the fast path's build budget spent (a miss
    that needed a build would be deferred): what it answers now, it answers without either."""
    monkeypatch.setattr(handler, "build", lambda *_: pytest.fail("built"))
    monkeypatch.setattr(answers.INLINE_BUILDS, "tokens", -1.0)
    monkeypatch.setattr(answers.INLINE_BUILDS, "stamp", float("inf"))

"""The dispatcher's fast path routes a name to the block of its longest zone and remembers the
chain by name (issue 18 goal 3: one dict lookup a query instead of the zone match), without
changing where any query goes; with views, the chain is still picked per request."""

from __future__ import annotations

import dns.message
import dns.rcode
import pytest

from interkube.dns.wire import parse_query
from interkube.plugin.handler import Handler, link
from interkube.plugin.request import Request, Route
from interkube.server.dispatch import Dispatcher

SERVER = "dns://dispatch-test:53"


class Named(Handler):
    """Answers every query with its name in place of the response (what the test compares)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def fast(self, req: Request) -> bytes:
        return self.name.encode()


def dispatcher() -> Dispatcher:
    return Dispatcher({zone: (Route(zone, SERVER), link([Named(zone)]))
                       for zone in ("a.test.", "b.a.test.", "other.")})


def ask(d: Dispatcher, name: str) -> bytes | None:
    wire = dns.message.make_query(name, "A").to_wire()
    q = parse_query(wire)
    assert q is not None
    return d.fast(Request(wire, q, ("127.0.0.1", 5353), "udp"))


ROUTES = {"x.b.a.test.": b"b.a.test.", "B.A.TEST.": b"b.a.test.", "x.a.test.": b"a.test.",
          "a.test.": b"a.test.", "xb.a.test.": b"a.test.", "y.other.": b"other."}


class NoMatch:
    def match(self, lname: bytes) -> str | None:
        raise AssertionError("the zone match was asked again for a name already routed")


def test_each_name_goes_to_its_longest_zone_and_the_chain_is_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    d = dispatcher()
    for name, chain in ROUTES.items():
        assert ask(d, name) == chain, name
    refused = ask(d, "nowhere.test.")
    assert refused is not None and dns.message.from_wire(refused).rcode() == dns.rcode.REFUSED
    # Asked again, every name goes where it went, without a zone match.
    monkeypatch.setattr(d, "zones", NoMatch())
    for name, chain in ROUTES.items():
        assert ask(d, name) == chain, name
    again = ask(d, "nowhere.test.")
    assert again is not None and dns.message.from_wire(again).rcode() == dns.rcode.REFUSED


class Slow(Handler):
    """Sends every query to the slow path, which answers with the handler's name."""

    def __init__(self, name: str) -> None:
        self.name = name

    def fast(self, req: Request) -> bytes | None:
        return None

    async def serve(self, req: Request) -> bytes:
        return req.wire[:2] + self.name.encode()


async def test_the_slow_path_routes_as_the_fast_path() -> None:
    d = Dispatcher({zone: (Route(zone, SERVER), link([Slow(zone)])) for zone in ("a.test.", "b.a.test.", "other.")})
    for name, chain in ROUTES.items():
        wire = dns.message.make_query(name, "A").to_wire()
        q = parse_query(wire)
        assert q is not None
        req = Request(wire, q, ("127.0.0.1", 5353), "udp")
        assert d.fast(req) is None
        assert await d.serve(req) == wire[:2] + chain

"""The handler contract (interkube.plugin.handler): a handler that does not override a path
passes the query on, the end of every chain answers SERVFAIL, and link() chains in order."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode

from interkube.dns.wire import parse_query
from interkube.plugin.handler import Handler, Terminal, link
from interkube.plugin.request import Request


def request(name: str = "Www.Example.org.") -> Request:
    q = dns.message.make_query(name, "A", use_edns=0)
    q.id = 4242
    wire = q.to_wire()
    parsed = parse_query(wire)
    assert parsed is not None
    return Request(wire, parsed, ("127.0.0.1", 40000), "udp")


class Answers(Handler):
    """A handler that answers both paths with fixed bytes (what the one under test passes to)."""

    plugin = "answers"

    def fast(self, req: Request) -> bytes | None:
        return b"fast answer"

    async def serve(self, req: Request) -> bytes:
        return b"slow answer"


class PassesOn(Handler):
    """A handler that overrides nothing, as a new pass-through plugin would start."""

    plugin = "passes-on"


async def test_a_handler_that_overrides_nothing_passes_both_paths_on() -> None:
    head = link([PassesOn(), Answers()])
    assert head.fast(request()) == b"fast answer"  # not the slow path (None)
    assert await head.serve(request()) == b"slow answer"


async def test_the_end_of_the_chain_answers_servfail_on_both_paths() -> None:
    req = request()
    for wire in (Terminal().fast(req), await Terminal().serve(req)):
        resp = dns.message.from_wire(wire)
        assert resp.rcode() == dns.rcode.SERVFAIL
        assert resp.id == 4242 and resp.flags & dns.flags.QR and resp.flags & dns.flags.RD
        assert resp.question[0].name.to_text() == "Www.Example.org."  # the client's own letters
        assert resp.edns == 0  # EDNS answered with EDNS


def test_link_chains_in_order_and_ends_with_the_terminal() -> None:
    first, second = PassesOn(), Answers()
    head = link([first, second])
    assert head is first and first.next is second and isinstance(second.next, Terminal)
    assert isinstance(link([]), Terminal)

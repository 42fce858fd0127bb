"""The request a chain sees (interkube.plugin.request): the parse is lazy, the name keeps the
client's letters, the family follows the socket address, and routes compare by identity."""

from __future__ import annotations

import dns.message

from interkube.dns.wire import parse_query
from interkube.plugin.request import UNROUTED, Request, Route


def request(client: tuple[object, ...]) -> Request:
    wire = dns.message.make_query("WwW.example.ORG.", "AAAA").to_wire()
    parsed = parse_query(wire)
    assert parsed is not None
    return Request(wire, parsed, client, "tcp")


def test_the_message_is_parsed_on_first_use_only() -> None:
    req = request(("127.0.0.1", 5300))
    assert req._message is None  # the fast path never pays for dnspython
    assert req.qname_text == "WwW.example.ORG."
    assert req.message is req.message
    assert req.qtype == 28


def test_family_and_client() -> None:
    assert request(("127.0.0.1", 5300)).family == 4
    v6 = request(("::1", 5300, 0, 0))
    assert v6.family == 6 and v6.client_ip == "::1"


def test_routes_compare_by_identity_and_name_zone_and_server() -> None:
    a, b = Route("example.", "dns://:53"), Route("example.", "dns://:53")
    assert a != b and len({a, b}) == 2  # metrics key their counts on the route object
    req = request(("127.0.0.1", 5300))
    assert req.route is UNROUTED and req.zone == "."
    req.route = a
    assert (req.zone, req.server) == ("example.", "dns://:53")

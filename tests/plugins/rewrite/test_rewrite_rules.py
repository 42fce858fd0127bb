"""The rules on one query, without a server: what each makes of the question and which response
rules it leaves (for what a running server cannot easily show: metadata, IPv6 clients, the
address a query came in on)."""

from __future__ import annotations

import dns.message
import pytest

from interkube.dns.wire import parse_query
from interkube.plugin.request import Request, Route
from interkube.plugins.rewrite.parse import parse
from interkube.plugins.rewrite.rules import (
    OptionRevert,
    OwnerNames,
    TtlClamp,
    ValueNames,
    evaluate,
    local_address,
    subnet,
    variable,
)
from testkit.corefile import directive


def request(name: str, rdtype: str = "A", client: tuple[object, ...] = ("127.0.0.1", 5300),
            meta: dict[str, object] | None = None, server: str = "dns://127.0.0.1:53") -> Request:
    wire = dns.message.make_query(name, rdtype).to_wire()
    q = parse_query(wire)
    assert q is not None
    req = Request(wire, q, client, "udp")
    req.route = Route(".", server)
    req.meta = meta
    return req


def rules(*lines: str) -> list[object]:
    return [parse(directive(line)).rule for line in lines]


def test_metadata_name_rule_takes_the_labels_value_in_lower_case() -> None:
    rule = rules(r"rewrite name regex ^([^.]+)\.example\.$ {1}.{kubernetes/client-namespace}.svc.cluster.local "
                 "metadata answer auto")
    ev = evaluate(rule, request("Web.example", meta={"kubernetes/client-namespace": lambda: "Team-A"}))  # type: ignore[arg-type]
    assert (ev.rewrote, ev.state.qname) == (True, "web.team-a.svc.cluster.local.")
    back = next(r for r in ev.responses if isinstance(r, OwnerNames))
    assert back.rewriter("web.team-a.svc.cluster.local.") == "web.example."


@pytest.mark.parametrize("meta", [None, {}, {"kubernetes/client-namespace": ""}])
def test_a_label_without_a_value_skips_the_rule_even_a_stop_one(meta: dict[str, object] | None) -> None:
    listed = rules(r"rewrite name regex ^([^.]+)\.example\.$ {1}.{kubernetes/client-namespace}.svc metadata",
                   "rewrite name exact web.example other.example")
    ev = evaluate(listed, request("web.example", meta=meta))  # type: ignore[arg-type]
    assert ev.state.qname == "other.example."


def test_variables() -> None:
    req = request("WwW.Example.org", "AAAA", client=("2001:db8::7", 4242, 0, 0), server="dns://[2001:db8::1]:5353")
    st = evaluate([], req).state
    assert variable("{qname}", st) == b"WwW.Example.org."
    assert variable("{qtype}", st) == b"\x00\x1c"
    assert variable("{client_port}", st) == b"\x10\x92"
    assert variable("{server_port}", st) == b"\x14\xe9"
    assert variable("{client_ip}", st) == bytes.fromhex("20010db8000000000000000000000007")
    assert variable("{server_ip}", st) == bytes.fromhex("20010db8000000000000000000000001")
    assert variable("{protocol}", st) == b"udp"
    assert variable("{plugin/label}", st) is None
    st.req.meta = {"plugin/label": "value"}
    assert variable("{plugin/label}", st) == b"value"


def test_local_address_of_a_block_on_every_interface_is_the_unspecified_one() -> None:
    assert local_address(request("a.example", server="dns://:53")) == ("0.0.0.0", 53)
    assert local_address(request("a.example", client=("::1", 1, 0, 0), server="dns://:53")) == ("::", 53)


def test_client_subnet_for_both_families() -> None:
    assert subnet(request("a.example", client=("192.0.2.77", 1)), 24, 56) == bytes.fromhex("00011800c00002")
    assert subnet(request("a.example", client=("2001:db8:1:2:3::9", 1, 0, 0)), 24, 56) == \
        bytes.fromhex("0002380020010db8000100")
    assert subnet(request("a.example", client=("192.0.2.77", 1)), 0, 0) == bytes.fromhex("00010000")


def test_response_rules_come_in_rule_order_and_apply_last_first() -> None:
    listed = rules("rewrite continue name exact a.example b.example", "rewrite continue ttl b.example 30",
                   "rewrite edns0 local set 0xffee x revert")
    ev = evaluate(listed, request("a.example"))
    assert [type(r) for r in ev.responses] == [OwnerNames, ValueNames, TtlClamp, OptionRevert]


def test_an_invalid_name_stops_the_list_with_the_reason() -> None:
    ev = evaluate(rules("rewrite name prefix a " + "x" * 64, "rewrite ttl a.example 5"), request("a.example"))
    assert ev.invalid == f"invalid name after rewrite: {'x' * 64}.example."
    assert ev.responses == []

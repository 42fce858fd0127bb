"""loadbalance: the answer's records shuffled (CNAMEs kept in front, nothing lost or changed),
on the wire and through the server."""

from __future__ import annotations

import dns.message
import dns.rdatatype
import dns.rrset

from interkube.plugins.loadbalance.handler import shuffle_answer
from testkit.fakeupstream import FakeUpstream
from testkit.servers import aquery, free_port, in_process


def test_shuffle_keeps_the_records_and_their_layout() -> None:
    q = dns.message.make_query("a.example.", "A")
    resp = dns.message.make_response(q)
    resp.answer.append(dns.rrset.from_text("a.example.", 30, "IN", "CNAME", "b.example."))
    resp.answer.append(dns.rrset.from_text_list("b.example.", 30, "IN", "A", [f"192.0.2.{i}" for i in range(1, 9)]))
    wire = resp.to_wire()
    orders = set()
    for _ in range(50):
        out = shuffle_answer(wire)
        assert len(out) == len(wire)
        msg = dns.message.from_wire(out)
        assert msg.answer[0].rdtype == dns.rdatatype.CNAME  # CNAME stays in front
        order = tuple(rr.address for rr in msg.answer[1])
        assert sorted(order) == sorted(f"192.0.2.{i}" for i in range(1, 9))
        orders.add(order)
    assert len(orders) > 1


async def test_loadbalance_through_the_server(example_upstream: FakeUpstream) -> None:
    port = free_port()
    core = f"example.:{port} {{\n bind 127.0.0.1\n loadbalance\n forward . {example_upstream.address}\n}}\n"
    async with in_process(core):
        firsts = set()
        for _ in range(30):
            r = await aquery("a.example.", "A", port)
            addrs = [rr.address for rr in r.answer[0]]
            assert sorted(addrs) == ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"]
            firsts.add(addrs[0])
        mx_orders = set()
        for _ in range(20):
            r = await aquery("mx.example.", "MX", port)
            mx_orders.add(tuple(rr.preference for rr in r.answer[0]))
    assert len(firsts) > 1 and len(mx_orders) > 1

"""forward over TCP to an upstream that closes connections after a number of queries (RFC 7766
§6.2.4): the queries left unanswered on a closed connection are sent again on a fresh one, and
the upstream's limit is learned so that later connections stop short of it.

dnsmasq is the real case: it closes a TCP connection after 100 queries (TCP_MAX_QUERIES), and
answers one query at a time, so a pipelining forwarder always has queries written past the 100th.
"""

from __future__ import annotations

import asyncio
import collections

import dns.message
import dns.rcode

from interkube.pkg.framing import frame
from interkube.plugins.forward.handler import ForwardHandler
from testkit.servers import LOOPBACK, dnsmasq, free_port, in_process, read_frame

#: dnsmasq's TCP_MAX_QUERIES (config.h): the queries it answers on one connection before closing it.
DNSMASQ_QUERIES_PER_CONNECTION = 100


def forwarders(server) -> list[ForwardHandler]:  # type: ignore[no-untyped-def]
    return [h for h in server.instance.built.handlers if isinstance(h, ForwardHandler)]


async def pipelined(port: int, names: list[str], connections: int) -> collections.Counter[str]:
    """Every name asked once over ``connections`` client TCP connections, each written in one go
    before any answer is read; the rcodes of the answers, counted (an unanswered query counts as
    "no answer")."""

    async def one_connection(chunk: list[str]) -> list[str]:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        try:
            queries = [dns.message.make_query(name, "A") for name in chunk]
            writer.write(b"".join(frame(q.to_wire()) for q in queries))
            await writer.drain()
            rcodes = []
            for _ in queries:
                try:
                    msg = dns.message.from_wire(await read_frame(reader, timeout=15))
                except (TimeoutError, asyncio.IncompleteReadError):
                    break
                rcodes.append(dns.rcode.to_text(msg.rcode()))
            return rcodes + ["no answer"] * (len(queries) - len(rcodes))
        finally:
            writer.close()

    chunks = [names[i::connections] for i in range(connections)]
    results = await asyncio.gather(*(one_connection(c) for c in chunks))
    return collections.Counter(r for rcodes in results for r in rcodes)


async def test_a_thousand_pipelined_queries_to_dnsmasq_over_tcp_get_no_servfail() -> None:
    records = {f"h{i}.example": [f"192.0.2.{i % 250 + 1}"] for i in range(50)}
    names = [f"h{i % 50}.example." for i in range(1000)]
    upstream_port, port = free_port(), free_port()
    core = (f"example.:{port} {{\n bind 127.0.0.1\n"
            f" forward . 127.0.0.1:{upstream_port} {{\n  force_tcp\n }}\n}}\n")
    with dnsmasq(upstream_port, records):
        async with in_process(core) as server:
            rcodes = await pipelined(port, names, connections=4)
            forward = forwarders(server)[0]
            upstream = forward.upstreams[0]
            assert rcodes == {"NOERROR": 1000}, rcodes
            # Not one exchange with the upstream failed: none waited out its timeout for forward
            # to try again.
            assert (upstream.stats.requests, upstream.stats.failures) == (1000, 0)
            # dnsmasq did close connections under queries, and we learned its limit from that.
            assert upstream.stream.queries_per_connection == DNSMASQ_QUERIES_PER_CONNECTION
            counters = upstream.stream.counters
            assert counters.closed_early >= 2 and counters.retried >= 1
            exported = {s.name: s.value for family in forward.collect() for s in family.samples
                        if s.name.startswith("interkube_forward_conn_")}
            assert exported == {"interkube_forward_conn_closed_early_total": counters.closed_early,
                                "interkube_forward_conn_retries_total": counters.retried}

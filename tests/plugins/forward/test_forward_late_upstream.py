"""forward in a served process (`interkube serve`, on uvloop where it is installed: the in-process
tests run on asyncio's loop) to an upstream that starts after its first queries: those are refused
(ICMP port unreachable, SERVFAIL at once), and once the upstream listens every query is answered.

On uvloop each UDP socket that had a refusal used to read nothing more (libuv stops polling a
descriptor that reports POLLERR): for the 10 s until the sockets expired, the answers sat unread
and queries got SERVFAIL after two timed-out attempts. See tests/upstream/test_udp_refused.py.
"""

from __future__ import annotations

from pathlib import Path

import dns.rcode

from interkube.upstream.transport import DatagramExchanger
from testkit.servers import dnsmasq, free_port, interkube_process, query

#: forward's UDP sockets per upstream (DatagramExchanger's default), which queries take in turn.
SOCKETS = DatagramExchanger("127.0.0.1", 53).size


def test_an_upstream_that_starts_after_the_first_queries(tmp_path: Path) -> None:
    upstream, port = free_port(), free_port()
    corefile = tmp_path / "Corefile"
    corefile.write_text(f".:{port} {{\n forward . 127.0.0.1:{upstream}\n}}\n")
    with interkube_process(corefile, port):  # (its wait for an answer is refused upstream already)
        # Refusals on every socket: each query's two attempts take the next two sockets.
        for _ in range(SOCKETS):
            assert query("a.example.", "A", port, timeout=10).rcode() == dns.rcode.SERVFAIL
        with dnsmasq(upstream, {"a.example": ["192.0.2.1"]}):
            for _ in range(2 * SOCKETS):
                reply = query("a.example.", "A", port, timeout=10)
                assert reply.rcode() == dns.rcode.NOERROR and "192.0.2.1" in str(reply.answer), reply

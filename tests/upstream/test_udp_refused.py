"""A UDP upstream socket after the upstream refused a query (an ICMP port unreachable, which a
connected socket reports as ECONNREFUSED): its later answers are still read, on asyncio's loop and
on uvloop's, whose poll handle (libuv's uv_poll_t) stops watching a descriptor when epoll reports
POLLERR for it. Without a new registration the socket read nothing more: every query sent on it
timed out until it expired, which made forward answer SERVFAIL for seconds after an upstream that
started later than its clients (tests/doctor/test_doctor_probe.py's scenario on a loaded machine).
"""

from __future__ import annotations

import asyncio
import select
import socket
from collections.abc import Callable

import dns.message
import dns.rcode
import pytest

from interkube.errors import UpstreamRefused
from interkube.pkg import datagrams
from interkube.upstream.transport import DatagramExchanger, PendingAnswer
from testkit.fakeupstream import FakeUpstream
from testkit.servers import LOOPBACK, free_port
from testkit.waiting import until

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop}
try:
    import uvloop
except ImportError:  # (an optional dependency: asyncio's loop alone is then what serve runs on)
    pass
else:
    LOOPS["uvloop"] = uvloop.new_event_loop

NAME = "a.example."


def _query() -> bytes:
    return dns.message.make_query(NAME, "A").to_wire()


async def _answered_after(refuse: Callable[[DatagramExchanger], object]) -> None:
    """``refuse`` gets a query to the exchanger's one socket refused; then an upstream starts on
    that port, and a query on the same socket must have its answer."""
    port = free_port()
    ex = DatagramExchanger(LOOPBACK, port, sockets=1, expire=600)  # one socket, never replaced here
    try:
        await refuse(ex)  # type: ignore[misc]
        upstream = await FakeUpstream(LOOPBACK, port).start()
        upstream.behaviour.records = {(NAME, "A"): ["192.0.2.1"]}
        try:
            answer = dns.message.from_wire(await ex.exchange(_query(), 5))
        finally:
            await upstream.stop()
        assert answer.rcode() == dns.rcode.NOERROR and "192.0.2.1" in str(answer.answer), answer
    finally:
        ex.close()


async def _refused_on_read(ex: DatagramExchanger) -> None:
    """The error read by the socket's reader (epoll's POLLERR wakes it)."""
    with pytest.raises(UpstreamRefused):
        await ex.exchange(_query(), 5)


async def _refused_on_send(ex: DatagramExchanger) -> None:
    """The error taken by a send before the reader runs: a client's query, forwarded from the
    listener's read callback (datagrams.hold/release), leaves on this socket in the same loop pass
    whose batch of events already holds the socket's POLLERR. That event is then stale: a reader
    woken by it finds nothing to read, and uvloop has stopped watching the socket all the same."""
    loop = asyncio.get_running_loop()
    client_side, listener_side = socket.socketpair()  # stands for a listener with a client's query
    listener_side.setblocking(False)
    forwarded: list[PendingAnswer] = []

    def listener_readable() -> None:
        listener_side.recv(16)
        held = datagrams.hold()
        try:
            forwarded.append(ex.launch(_query(), 5))
        finally:
            datagrams.release(held)  # the send, here, takes the socket's error

    loop.add_reader(listener_side.fileno(), listener_readable)
    try:
        # The listener's event first in the loop's next batch, the upstream socket's POLLERR (the
        # refusal of a first query, sent now) after it.
        client_side.send(b"q")
        held = datagrams.hold()
        first = ex.launch(_query(), 5)
        datagrams.release(held)
        upstream_socket = select.poll()
        upstream_socket.register(_the_socket(ex), 0)  # (POLLERR is always reported; polling takes nothing)
        assert upstream_socket.poll(5000), "no ICMP port unreachable for the first query"
        try:
            with pytest.raises(UpstreamRefused):
                await first.answer
        finally:
            first.release()
        await until(lambda: bool(forwarded) and forwarded[0].answer.done(), "the forwarded query's refusal", 5)
        with pytest.raises(UpstreamRefused):
            forwarded[0].answer.result()
        forwarded[0].release()
    finally:
        loop.remove_reader(listener_side.fileno())
        client_side.close()
        listener_side.close()


def _the_socket(ex: DatagramExchanger) -> int:
    """The descriptor of the exchanger's one socket."""
    sock = ex._socks[0]
    assert sock is not None
    return sock.fd


@pytest.mark.parametrize("loop", sorted(LOOPS))
@pytest.mark.parametrize("refuse", [_refused_on_read, _refused_on_send], ids=["error-read", "error-sent"])
def test_a_refused_socket_still_reads_answers(loop: str, refuse: Callable[[DatagramExchanger], object]) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        runner.run(_answered_after(refuse))

"""UDP in batches (the listeners' answers, the upstream exchanger's queries), on loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from interkube.pkg import datagrams
from testkit.waiting import until


@pytest.fixture(params=["c-helper", "python"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Both ways of sending: through the C helper (where it is built) and plain socket calls."""
    if request.param == "python":
        monkeypatch.setattr(datagrams, "udpfast", None)
    elif datagrams.udpfast is None:
        pytest.skip("interkube._udpfast is not built")
    yield request.param


@pytest.fixture
def receiver() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    yield sock
    sock.close()


def received(sock: socket.socket, count: int) -> list[bytes]:
    return [sock.recv(100) for _ in range(count)]


def test_connected_and_addressed_datagrams_are_sent(path: str, receiver: socket.socket) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        datagrams.send_batch(sender, [(b"one", receiver.getsockname()), (b"two", receiver.getsockname())])
        sender.connect(receiver.getsockname())
        datagrams.send_batch(sender, [b"three"])
    assert received(receiver, 3) == [b"one", b"two", b"three"]


async def test_an_outbox_sends_what_one_pass_put_in_together(path: str, receiver: socket.socket,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    failures: list[OSError] = []
    batches: list[int] = []
    real = datagrams.send_batch

    def counting(sock: socket.socket, out: list[datagrams.Datagram]) -> None:
        batches.append(len(out))
        real(sock, out)

    monkeypatch.setattr(datagrams, "send_batch", counting)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.connect(receiver.getsockname())
        outbox = datagrams.Outbox(sender, asyncio.get_running_loop(), failures.append)
        for i in range(5):
            outbox.put(b"%d" % i)
        await until(lambda: batches == [5], "one batch of five")
    assert received(receiver, 5) == [b"0", b"1", b"2", b"3", b"4"] and failures == []


async def test_outboxes_filled_in_a_held_read_send_at_its_release_without_a_callback_each(
        path: str, receiver: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    """What two outboxes take while a read callback holds them (a nested hold included) leaves
    at the outer release, each in one batch, with no callback scheduled for it; an outbox filled
    after the release is sent at the end of the pass again. Before: at the end of the pass, a
    callback each."""
    loop = asyncio.get_running_loop()
    scheduled: list[object] = []
    real_call_soon = loop.call_soon

    def call_soon(callback: Callable[..., object], *args: object, **kwargs: Any) -> asyncio.Handle:
        scheduled.append(callback)
        return real_call_soon(callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_soon", call_soon)
    receiver.setblocking(False)
    failures: list[OSError] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
        a.connect(receiver.getsockname())
        first, second = datagrams.Outbox(a, loop, failures.append), datagrams.Outbox(b, loop, failures.append)
        held = datagrams.hold()
        assert held is not None
        first.put(b"q1")
        inner = datagrams.hold()
        assert inner is None  # another read's callback inside this one: the outer release sends
        second.put((b"a1", receiver.getsockname()))
        first.put(b"q2")
        datagrams.release(inner)
        with pytest.raises(BlockingIOError):
            receiver.recv(100)  # nothing before the outer release
        datagrams.release(held)
        assert first.items == [] and second.items == [] and scheduled == []
        receiver.settimeout(5)
        assert sorted(received(receiver, 3)) == [b"a1", b"q1", b"q2"]
        first.put(b"q3")  # not held: sent at the end of the pass
        assert len(scheduled) == 1
        await until(lambda: first.items == [], "the pass's send")
        assert received(receiver, 1) == [b"q3"] and failures == []


async def test_nothing_is_sent_once_the_socket_is_closed(receiver: socket.socket) -> None:
    failures: list[OSError] = []
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    outbox = datagrams.Outbox(sender, asyncio.get_running_loop(), failures.append)
    outbox.put((b"late", receiver.getsockname()))
    sender.close()
    await asyncio.sleep(0)  # the pass ends: the outbox's send runs and finds the socket closed
    assert outbox.items == [] and failures == []


def test_each_datagram_goes_to_its_own_address_among_many(path: str) -> None:
    # Addresses as fresh tuples, one per datagram, equal ones and others: the C helper remembers
    # the addresses it sent to by the tuple's identity, and a freed tuple's memory is soon another's.
    receivers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(8)]
    try:
        for sock in receivers:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(5)
        ports = [sock.getsockname()[1] for sock in receivers]
        sent = 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for round_ in range(25):
                # tuple(list) makes a new tuple object each time (a literal would be one constant).
                out: list[datagrams.Datagram] = [(b"%d" % i, tuple(["127.0.0.1", ports[(i + round_) % 8]]))
                                                 for i in range(8)]
                datagrams.send_batch(sender, out)
                sent += 1
        for k, sock in enumerate(receivers):
            got = [sock.recv(100) for _ in range(sent)]
            assert got == [b"%d" % ((k - r) % 8) for r in range(sent)]
    finally:
        for sock in receivers:
            sock.close()


def test_the_c_readers_give_every_datagram_its_whole_sender_address_whatever_they_read_before() -> None:
    """The C helper's readers share their receive headers between sockets and calls: a read from
    an IPv4 socket (16-byte addresses), then from an IPv6 one (28 bytes), then one without
    addresses (an upstream's answers), then IPv6 again: each datagram comes with its sender's
    address whole (a length left from the read before would cut an IPv6 address short)."""
    fast = datagrams._built
    if fast is None:
        pytest.skip("interkube._udpfast is not built")
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    socks: list[socket.socket] = []

    def bound(family: int, host: str) -> socket.socket:
        s = socket.socket(family, socket.SOCK_DGRAM)
        socks.append(s)
        s.bind((host, 0))
        s.setblocking(False)
        return s

    def drained(sock: socket.socket) -> list[tuple[bytes, object]]:
        got: list[tuple[bytes, object]] = []
        fast.drain(sock.fileno(), lambda data, addr: got.append((data, addr)), 4)
        return got

    try:
        v4, v6, plain = bound(socket.AF_INET, "127.0.0.1"), bound(socket.AF_INET6, "::1"), \
            bound(socket.AF_INET, "127.0.0.1")
        c4, c6 = bound(socket.AF_INET, "127.0.0.1"), bound(socket.AF_INET6, "::1")
        for i in range(3):
            c4.sendto(b"four%d" % i, v4.getsockname())
        assert drained(v4) == [(b"four%d" % i, c4.getsockname()) for i in range(3)]
        c6.sendto(b"six", v6.getsockname())
        assert drained(v6) == [(b"six", c6.getsockname())]
        plain.connect(c4.getsockname())
        c4.sendto(b"\x00" * 12, plain.getsockname())
        assert fast.drain_answers(plain.fileno(), {}, 4, ValueError) == 1  # (not an answer: dropped)
        c6.sendto(b"again", v6.getsockname())
        assert drained(v6) == [(b"again", c6.getsockname())]
    finally:
        for s in socks:
            s.close()

"""Answers from memory that are not built yet (issue 19): the fast path builds them within a
budget (InlineBuilds); over it, a miss goes to the slow path, which builds it, and the answers
already built are still served at once. A flood of names nobody asked before then waits in the
listener's bounded backlog instead of in front of the ready answers."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import dns.edns
import dns.message
import dns.rcode
import pytest

from interkube.corefile.parser import parse_text
from interkube.plugin import answers
from interkube.plugin.services import Services
from interkube.server.dispatch import Dispatcher
from interkube.server.listeners import Listener, UdpEndpoint
from interkube.server.runtime import build
from testkit.waiting import until
from tests.server.udp_helpers import client as udp_client


@pytest.fixture
async def endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[UdpEndpoint]:
    # The budget is the process's: builds of earlier tests (a first dnspython render takes
    # milliseconds on a loaded machine) may have left it in debt, and the first build here is
    # to be made within it.
    monkeypatch.setattr(answers.INLINE_BUILDS, "tokens", answers.INLINE_BUILD_BURST)
    (tmp_path / "hosts").write_text("192.0.2.1 ready.mem.test\n192.0.2.2 new.mem.test\n")
    built = build(parse_text(f"mem.test:53 {{\n hosts {tmp_path / 'hosts'}\n}}\n"), "test", Services())
    [chains] = built.chains.values()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    ep = UdpEndpoint(Listener("dns", "127.0.0.1", 0, Dispatcher(chains)), sock)
    yield ep
    ep.close()


@pytest.fixture
def client() -> Iterator[socket.socket]:
    with udp_client() as s:
        yield s


def wire(name: str) -> bytes:
    """A query hosts answers with a build: one asking for EDNS padding (its answers to others
    are written on the wire, without a build)."""
    padding = dns.edns.GenericOption(dns.edns.OptionType.PADDING, b"")
    return dns.message.make_query(name, "A", use_edns=0, options=[padding]).to_wire()


def address(resp: bytes) -> str:
    msg = dns.message.from_wire(resp)
    assert msg.rcode() == dns.rcode.NOERROR
    return str(msg.answer[0][0])


async def test_within_the_budget_the_fast_path_builds(endpoint: UdpEndpoint, client: socket.socket) -> None:
    resp = endpoint.handle(wire("ready.mem.test."), client.getsockname())
    assert resp is not None and address(resp) == "192.0.2.1"


async def test_over_the_budget_a_miss_is_built_on_the_slow_path_and_ready_answers_stay_fast(
        endpoint: UdpEndpoint, client: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    addr = client.getsockname()
    assert endpoint.handle(wire("ready.mem.test."), addr)  # built while within the budget
    # Spent: a second of building in debt, which the refill does not pay back during the test.
    monkeypatch.setattr(answers.INLINE_BUILDS, "tokens", -1.0)
    assert endpoint.handle(wire("new.mem.test."), addr) is None  # queued, not built here
    assert len(endpoint.backlog) == 1
    ready = endpoint.handle(wire("ready.mem.test."), addr)  # built before: answered at once
    assert ready is not None and address(ready) == "192.0.2.1"

    def answered() -> bytes | None:
        try:
            return client.recv(4096)
        except BlockingIOError:
            return None

    resp = await until(answered, "the slow path builds and sends the answer")
    assert resp is not None and address(resp) == "192.0.2.2"
    # Built now: the fast path answers it, budget or not.
    again = endpoint.handle(wire("new.mem.test."), addr)
    assert again is not None and address(again) == "192.0.2.2"

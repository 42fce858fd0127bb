"""A failed forward leaves nothing for the garbage collector (issue 19, section 6).

A query whose upstream never answers failed with its exception held by its own frames (the
exchange's pending answer, forward's last error), each such query a reference cycle of 17
objects, its request among them. Under a silent upstream at thousands of queries a second,
collecting those made pauses of the whole event loop of 100 ms and more; they must be freed
by reference counting, at once.
"""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import Iterator

import dns.rcode
import pytest

from interkube.plugin.request import Request
from testkit.servers import aquery, free_port, in_process


@pytest.fixture
def collector_off() -> Iterator[None]:
    """The garbage collector stopped, so that what it would free stays to be counted."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was_enabled:
            gc.enable()


def requests_in_cycles() -> int:
    """Requests that only the garbage collector could free."""
    gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection finds unreachable is kept in gc.garbage
    try:
        gc.collect()
        return sum(1 for o in gc.garbage if isinstance(o, Request))
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


async def test_queries_to_a_silent_upstream_leave_no_reference_cycle(collector_off: None) -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # never read: every attempt times out
        conf = (f".:{port} {{\n bind 127.0.0.1\n errors\n"
                f" forward . 127.0.0.1:{silent.getsockname()[1]} {{\n  read_timeout 50ms\n }}\n}}\n")
        async with in_process(conf):
            answers = await asyncio.gather(*(aquery(f"n{i}.fwd.test.", "A", port, timeout=10) for i in range(20)))
            assert {a.rcode() for a in answers} == {dns.rcode.SERVFAIL}
            assert requests_in_cycles() == 0

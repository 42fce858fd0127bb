"""The open-files limit: raised to the hard limit at start, the TCP cap sized to leave a reserve
under it, the figures logged; and with the common soft limit of 1024 that cannot be raised,
1,100 idle TCP connections leave UDP (and forwarding) answering. Also serve's limit flags."""

from __future__ import annotations

import re
import resource
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import dns.rcode
import pytest

from interkube.server.limits import fd_reserve, tcp_cap_for
from testkit.fakeupstream import FakeUpstream
from testkit.servers import aquery, free_port, interkube_process, process_output

LIMIT_LINE = re.compile(r"\[INFO\] (open files limit .*)")


def corefile(path: Path, port: int, upstream: str) -> Path:
    path.write_text(f"example.org:{port} {{\n    bind 127.0.0.1\n    errors\n    forward . {upstream}\n}}\n")
    return path


def nofile(soft: int, hard: int) -> Callable[[], None]:
    """For preexec_fn: the child starts with these open-files limits."""
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def limit_line(proc: subprocess.Popen[bytes]) -> str:
    lines = LIMIT_LINE.findall(process_output(proc))
    assert len(lines) == 1, process_output(proc)
    return str(lines[0])


def process_soft_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open files line")


def test_the_cap_leaves_a_reserve_under_the_limit() -> None:
    assert tcp_cap_for(1024) == 768
    assert tcp_cap_for(4096) == 1024 and tcp_cap_for(1 << 20) == 1024  # the default cap
    assert tcp_cap_for(256) == 128 and tcp_cap_for(0) == 1024  # a tiny limit; none known
    for limit in (64, 256, 512, 1024, 1500, 4096, 65536):
        assert limit - tcp_cap_for(limit) >= fd_reserve(limit) >= min(256, limit // 2)


@pytest.fixture
def hard_limit_room() -> None:
    """These tests lower the server's limit to 1024 and open 1,100 connections from here."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4096:
        pytest.skip(f"the hard open-files limit is {hard}; these tests need 4096")
    if soft != resource.RLIM_INFINITY and soft < 2048:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))


def test_the_soft_limit_is_raised_to_the_hard_one_and_logged(tmp_path: Path, hard_limit_room: None) -> None:
    port = free_port()
    with interkube_process(corefile(tmp_path / "Corefile", port, "127.0.0.1:9"), port,
                           preexec_fn=nofile(1024, 4096)) as proc:
        assert process_soft_limit(proc.pid) == 4096
        assert limit_line(proc) == ("open files limit 4096 (raised from 1024); TCP and TLS connections: "
                                    "at most 1024, 64 per client address")


def test_the_flags_set_the_limits(tmp_path: Path) -> None:
    port = free_port()
    args = ("-tcp.max-connections", "5", "--tcp-max-per-client", "0", "-tcp.idle-timeout", "1m",
            "-tcp.frame-timeout", "500ms", "-tls.handshake-timeout", "2s")
    with interkube_process(corefile(tmp_path / "Corefile", port, "127.0.0.1:9"), port, args=args) as proc:
        assert limit_line(proc).endswith("TCP and TLS connections: at most 5, no limit per client address")
    bad = subprocess.run([sys.executable, "-m", "interkube", "serve", "-tcp.idle-timeout", "10 parsecs"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "-tcp.idle-timeout" in bad.stderr and "invalid duration" in bad.stderr


async def test_idle_connections_at_a_low_limit_leave_udp_answering(tmp_path: Path, hard_limit_room: None) -> None:
    """systemd's default soft limit, 1024, and no room to raise it: 1,100 idle TCP connections
    once left no descriptor for the forwarder's UDP socket (every UDP query SERVFAIL)."""
    up = await FakeUpstream().start()
    up.behaviour.records = {(f"n{i}.example.org.", "A"): [f"192.0.2.{i}"] for i in range(5)}
    port = free_port()
    conns: list[socket.socket] = []
    try:
        # No per-client limit: the cap alone must keep the reserve (every client here is 127.0.0.1).
        with interkube_process(corefile(tmp_path / "Corefile", port, up.address), port,
                               args=("-tcp.max-per-client", "0"), preexec_fn=nofile(1024, 1024)) as proc:
            assert limit_line(proc) == ("open files limit 1024; TCP and TLS connections: at most 768, "
                                        "no limit per client address")
            for _ in range(1100):
                conns.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            # The server has accepted them all when it answers on a connection made after them
            # (a zone it does not serve: REFUSED, no upstream involved).
            r = await aquery("other.net.", "A", port, tcp=True, timeout=10)
            assert r.rcode() == dns.rcode.REFUSED
            # Forwarding over UDP opens its socket now, under the 1,100 connections.
            for i in range(5):
                r = await aquery(f"n{i}.example.org.", "A", port, timeout=5)
                assert r.rcode() == dns.rcode.NOERROR and r.answer[0][0].address == f"192.0.2.{i}"
            assert "Too many open files" not in process_output(proc)
    finally:
        for s in conns:
            s.close()
        await up.stop()

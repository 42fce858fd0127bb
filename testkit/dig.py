"""Asking a DNS server with dig, as a user would (tests of what dig sees and prints).

Tests that only need an answer use dnspython (:func:`testkit.servers.query`); these helpers are
for checking a server against the tool people debug DNS with::

    @needs_dig
    def test_it(...):
        out = dig(port, "SRV", "_dns._udp.example.org")
        assert status(out) == "NOERROR"
        assert short(port, "www.example.org") == ["192.0.2.1"]
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from testkit.servers import LOOPBACK

#: For tests that run dig: skipped where it is not installed.
needs_dig = pytest.mark.skipif(shutil.which("dig") is None,
                               reason="dig is not installed (Debian package dnsutils)")


def dig(port: int, *args: str, host: str = LOOPBACK, tries: int = 1, wait: int = 2,
        check: bool = True, timeout: float = 30.0) -> str:
    """What ``dig @HOST -p PORT +tries=TRIES +time=WAIT ARGS...`` prints.

    One try with a short wait by default: the servers under test are on loopback, so a missing
    answer is the server's doing, not the network's; a test of a slow path (a server that must
    itself wait for an upstream) gives a longer ``wait``. With ``check`` a run in which dig got
    no answer at all (its exit status 9) fails the test; without, the output says what dig saw.
    ``timeout`` only bounds a dig that hangs.
    """
    cmd = ["dig", f"@{host}", "-p", str(port), f"+tries={tries}", f"+time={wait}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check).stdout


def short(port: int, name: str, rdtype: str = "A", *args: str, host: str = LOOPBACK,
          tries: int = 1, wait: int = 2) -> list[str]:
    """The answer's records as ``dig +short`` prints them, sorted (empty: no answer)."""
    return sorted(dig(port, "+short", *args, rdtype, name, host=host, tries=tries, wait=wait).splitlines())


def status(output: str) -> str:
    """The response code in dig's header (``;; ->>HEADER<<- opcode: QUERY, status: NXDOMAIN, ...``)."""
    for line in output.splitlines():
        if "status: " in line:
            return line.split("status: ", 1)[1].split(",", 1)[0]
    raise AssertionError(f"no status in dig's output:\n{output}")

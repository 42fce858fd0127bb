"""Run the built CoreDNS with a given Corefile on a free loopback port, for tests.

The Corefile is written by the test. Its server blocks take their port from ``{$DNS_PORT}``
(CoreDNS expands environment variables in Corefiles) or from ``-dns.port`` when they name none,
and must ``bind`` to loopback: CoreDNS would otherwise listen on every interface.

    with CoreDNS(binary, '''
        example.test {
            bind 127.0.0.1
            hosts {
                192.0.2.10 www.example.test
            }
        }
    ''', workdir) as dns:
        dns.query("www.example.test", "A")
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import dns.message
import dns.query
import dns.rdatatype

from testkit.peers import PeerProcess, free_udp_tcp_port

_BIND = re.compile(r"^\s*bind\s+(.+)$", re.M)
_LOOPBACK = {"127.0.0.1", "::1", "lo", "localhost"}


class CoreDNS:
    """One CoreDNS process on 127.0.0.1:``port``; stopped by PID."""

    def __init__(self, binary: Path, corefile: str, workdir: Path, *, host: str = "127.0.0.1",
                 probe_name: str = ".", env: Mapping[str, str] | None = None) -> None:
        corefile = textwrap.dedent(corefile)
        binds = _BIND.findall(corefile)
        if not binds or any(set(b.split()) - _LOOPBACK for b in binds):
            raise ValueError("Corefile for tests must 'bind' every server block to loopback "
                             "(127.0.0.1 or ::1)")
        self.host = host
        self.port = free_udp_tcp_port(host)
        self.probe_name = probe_name
        workdir.mkdir(parents=True, exist_ok=True)
        self.corefile_path = workdir / "Corefile"
        self.corefile_path.write_text(corefile)
        self.process = PeerProcess(
            "coredns",
            [binary, "-conf", self.corefile_path, "-dns.port", str(self.port)],
            workdir / "coredns.log",
            # A clean environment: no proxy variables, no in-cluster KUBERNETES_SERVICE_* leaking
            # into the kubernetes plugin; only what the Corefile is told to use.
            env={"PATH": "/usr/bin:/bin", **(env or {}), "DNS_PORT": str(self.port)},
            cwd=workdir,  # relative paths in the Corefile (file plugin zones) resolve here
        )

    def start(self, timeout: float = 30.0) -> CoreDNS:
        """Start and wait until a query to ``probe_name`` gets any answer (any rcode)."""
        self.process.start()
        self.process.wait_until(self._answers, timeout, f"answering DNS on {self.host}:{self.port}")
        return self

    def stop(self) -> None:
        self.process.stop()

    def _answers(self) -> bool:
        self.query(self.probe_name, "SOA", timeout=0.5)
        return True

    def query(self, name: str, rdtype: str | int = "A", *, tcp: bool = False,
              timeout: float = 2.0) -> dns.message.Message:
        """One query to this CoreDNS over UDP (or TCP); raises on timeout."""
        q = dns.message.make_query(name, dns.rdatatype.RdataType.make(rdtype))
        if tcp:
            return dns.query.tcp(q, self.host, port=self.port, timeout=timeout)
        return dns.query.udp(q, self.host, port=self.port, timeout=timeout)

    def __enter__(self) -> CoreDNS:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

"""Network namespaces for tests: made with a unique name, wired with veth pairs, torn down for sure.

* :class:`Lab` makes namespaces named ``PREFIX-ROLE-RANDOM`` (several engineers and CI jobs
  make namespaces at once on one host), veth pairs between them, addresses and routes; its
  :meth:`Lab.close` kills every process started through it by PID, then every process still
  inside its namespaces (found by ``ip netns pids``: the namespaces are the lab's own), then
  deletes the namespaces. Use it as a context manager or through a fixture.
* :meth:`Netns.socket` makes a socket *inside* a namespace from the test process itself: the
  calling thread enters the namespace (setns), creates the socket and comes back. A socket stays
  in the namespace it was made in, so the test can then use it like any other.
* :meth:`Netns.bridge_loopback` makes ``127.0.0.1:PORT`` inside a namespace reach ``127.0.0.1:PORT``
  of the test's own namespace (the kube-apiserver fixture listens there), so that a process in
  the namespace can use a kubeconfig written for the host unchanged. Traffic stays on loopback.

Nothing here touches the host namespace's links, addresses, routes or nftables.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

# The lab's own primitives: setns(2) on the calling thread, a socket made inside a namespace.
from interkube.lab.netns import inside as entered
from interkube.lab.netns import socket_in, stop


def unavailable() -> str | None:
    """Why namespace tests cannot run here (None: they can)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and nftables)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            return f"needs {tool}"
    probe = f"ikprobe-{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return f"cannot make a network namespace: {made.stderr.strip()}"
    try:
        nft = subprocess.run(["ip", "netns", "exec", probe, "nft", "add table ip probe"],
                             capture_output=True, text=True, check=False)
        if nft.returncode != 0:
            return f"nftables does not work in a namespace: {nft.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


@dataclass
class Netns:
    name: str
    lab: Lab

    def run(self, *argv: str, check: bool = True, input: str | None = None,
            timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run a command inside and wait for it."""
        proc = subprocess.run(["ip", "netns", "exec", self.name, *argv], input=input, capture_output=True,
                              text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{self.name}: {' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def start(self, argv: Sequence[str], **kw: object) -> subprocess.Popen[bytes]:
        """Start a process inside (``ip netns exec`` execs it: the PID is the process's own);
        the lab stops it at close if the test has not."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.name, *argv], **kw)  # type: ignore[call-overload]
        self.lab.processes.append(proc)
        return proc  # type: ignore[no-any-return]

    def ip(self, *argv: str) -> None:
        self.run("ip", *argv)

    def sysctl(self, key: str, value: str) -> None:
        self.run("sysctl", "-q", "-w", f"{key}={value}")

    def socket(self, family: int, kind: int) -> socket.socket:
        """A socket made inside this namespace."""
        return socket_in(self.name, family, kind)

    def bridge_loopback(self, port: int) -> None:
        """Relay 127.0.0.1:``port`` inside to 127.0.0.1:``port`` of the test's namespace."""
        with entered(self.name):
            listener = socket.create_server(("127.0.0.1", port))
        relay = _Relay(listener, port)
        self.lab.relays.append(relay)
        relay.start()


class _Relay(threading.Thread):
    """Accepts inside a namespace (the listening socket was made there) and connects from the
    thread's own namespace; one selector pumps every pair."""

    def __init__(self, listener: socket.socket, port: int) -> None:
        super().__init__(daemon=True, name=f"netns-relay-{port}")
        self.listener = listener
        self.port = port
        self.stopping = threading.Event()
        self.sel = selectors.DefaultSelector()
        self.peer: dict[socket.socket, socket.socket] = {}

    def run(self) -> None:
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ)
        while not self.stopping.is_set():
            for key, _ in self.sel.select(0.2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self.listener:
                    self._accept()
                else:
                    self._pump(sock)
        for sock in [self.listener, *self.peer]:
            sock.close()

    def _accept(self) -> None:
        try:
            inside, _ = self.listener.accept()
        except BlockingIOError:
            return
        try:
            outside = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        except OSError:
            inside.close()
            return
        for a, b in ((inside, outside), (outside, inside)):
            a.setblocking(True)
            self.peer[a] = b
            self.sel.register(a, selectors.EVENT_READ)

    def _pump(self, sock: socket.socket) -> None:
        other = self.peer.get(sock)
        try:
            data = sock.recv(65536)
            if data and other is not None:
                other.sendall(data)
                return
        except OSError:
            pass
        for s in (sock, other):
            if s is not None and s in self.peer:
                self.sel.unregister(s)
                del self.peer[s]
                s.close()

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)


@dataclass
class Lab:
    """Namespaces, links and processes of one test, all removed by :meth:`close`."""

    prefix: str = "ikt"
    suffix: str = field(default_factory=lambda: secrets.token_hex(3))
    namespaces: list[Netns] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    relays: list[_Relay] = field(default_factory=list)
    _links: int = 0

    def netns(self, role: str) -> Netns:
        name = f"{self.prefix}-{role}-{self.suffix}"
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
        ns = Netns(name, self)
        self.namespaces.append(ns)
        ns.ip("link", "set", "lo", "up")
        return ns

    def link(self, a: Netns, b: Netns, a_addresses: Sequence[str], b_addresses: Sequence[str]) -> tuple[str, str]:
        """A veth pair between ``a`` and ``b`` with these addresses (CIDR notation), up; returns
        the two interface names."""
        self._links += 1
        # Made inside ``a`` so that no interface ever appears in the host namespace.
        left, right = f"v{self._links}a", f"v{self._links}b"
        a.ip("link", "add", left, "type", "veth", "peer", "name", right, "netns", b.name)
        for ns, dev, addresses in ((a, left, a_addresses), (b, right, b_addresses)):
            for address in addresses:
                ns.ip("addr", "add", address, "dev", dev, *(["nodad"] if ":" in address else []))
            ns.ip("link", "set", dev, "up")
        return left, right

    def close(self) -> None:
        for relay in self.relays:
            relay.stop()
        for proc in self.processes:
            _stop(proc)
        for ns in self.namespaces:
            pids = subprocess.run(["ip", "netns", "pids", ns.name], capture_output=True, text=True, check=False)
            stop(int(pid) for pid in pids.stdout.split())
            subprocess.run(["ip", "netns", "del", ns.name], capture_output=True, check=False)
        self.namespaces.clear()
        self.processes.clear()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)

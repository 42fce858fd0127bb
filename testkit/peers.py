"""Where the Go-built peers (CoreDNS, kube-apiserver, etcd) live, and how to find them.

``scripts/build-peers`` builds pinned versions into a cache directory outside the repository;
the tests find them here and skip with one line saying how to enable them when they are absent.
This module is stdlib-only on purpose (as are testkit.processes and testkit.waiting, which it uses):
``scripts/build-peers`` loads it by file path (without importing the package) so that the pins
exist in exactly one place.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from testkit.processes import die_with_parent, log_tail, stop_process
from testkit.waiting import NeverHappened, wait_until

#: Environment variable that overrides the cache root.
PEERS_DIR_ENV = "INTERKUBE_PEERS_DIR"

#: Printed by skips: the one command that makes the peer tests run.
BUILD_HINT = "run scripts/build-peers"


@dataclass(frozen=True)
class PeerSpec:
    """One pinned peer: its name, the binary it produces and the version pinned."""

    name: str
    binary: str
    version: str  # Go module version, with the leading "v"
    version_args: tuple[str, ...]

    @property
    def dirname(self) -> str:
        return f"{self.name}-{self.version}"

    @property
    def bare_version(self) -> str:
        """The version as the binary prints it (no leading ``v``)."""
        return self.version.removeprefix("v")


# The pins. Why these versions is written next to the build recipes in scripts/build-peers.
PEERS: dict[str, PeerSpec] = {
    "coredns": PeerSpec("coredns", "coredns", "v1.15.0", ("-version",)),
    "kube-apiserver": PeerSpec("kube-apiserver", "kube-apiserver", "v1.36.3", ("--version",)),
    "etcd": PeerSpec("etcd", "etcd", "v3.6.16", ("--version",)),
}


def peers_root() -> Path:
    """The cache root: ``$INTERKUBE_PEERS_DIR`` or ``~/.cache/interkube/peers``."""
    env = os.environ.get(PEERS_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "interkube" / "peers"


def peer_path(name: str) -> Path:
    """Where the binary of peer ``name`` is (or would be) built."""
    spec = PEERS[name]
    return peers_root() / spec.dirname / spec.binary


def peer_version_output(path: Path, spec: PeerSpec) -> str | None:
    """Run the binary's version command; its output, or None if it does not run or mismatches."""
    try:
        done = subprocess.run([str(path), *spec.version_args], capture_output=True, text=True,
                              timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    out = (done.stdout + done.stderr).strip()
    if done.returncode != 0 or spec.bare_version not in out:
        return None
    return out


def find_peer(name: str) -> Path | None:
    """The built binary of peer ``name`` if it exists and is executable, else None.

    Only existence is checked here (cheap, called per test); ``scripts/build-peers --check``
    also runs the version command.
    """
    path = peer_path(name)
    if path.is_file() and os.access(path, os.X_OK):
        return path
    return None


def build_hint() -> str:
    """How to enable the peer tests here: the build command, and Go when it is missing."""
    if shutil.which("go") is None:
        return f"{BUILD_HINT} (needs Go >= 1.26 on PATH; there is no 'go' here)"
    return BUILD_HINT


def skip_message(name: str) -> str:
    """The one line a skipped test prints."""
    return f"{name} not built: {build_hint()}"


# --- running peers ---------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago.

    The kernel picks it; there is a window before the peer binds it, which is acceptable for
    tests (a collision shows up as a clear start failure, never as traffic elsewhere).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_udp_tcp_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on ``host`` (DNS servers listen on both)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, socket.SOCK_DGRAM) as u:
            u.bind((host, 0))
            port = int(u.getsockname()[1])
            with socket.socket(family, socket.SOCK_STREAM) as t:
                try:
                    t.bind((host, port))
                except OSError:
                    continue
                return port
    raise OSError(f"no port free for both UDP and TCP on {host}")


class PeerFailed(RuntimeError):
    """A peer process did not start or did not become ready; the message ends with its log."""


class PeerProcess:
    """One child process started by the tests: logged to a file, stopped by its PID."""

    def __init__(self, name: str, argv: Sequence[str | Path], log_path: Path,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.running():
            raise PeerFailed(f"{self.name} already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n==== start {self.name}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env=self.env, cwd=self.cwd,
                                          preexec_fn=die_with_parent)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; always reaps. Safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc, timeout)

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``ready()`` until true (a probe that raises means "not yet"); fail early, with
        the log, if the process exits."""
        try:
            wait_until(ready, what, timeout, every=0.1, ignoring=(Exception,), alive=self.running)
        except NeverHappened:
            state = f"exited before {what}" if not self.running() else f"not {what} after {timeout:.0f}s"
            raise PeerFailed(f"{self.name} {state}; log {self.log_path}:\n{self.log_tail()}") from None

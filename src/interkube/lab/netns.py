"""Network namespaces by name: create and delete them, run ``ip``/``nft`` inside, enter them.

Everything runs inside the lab's own namespaces: ``ip -n NS -batch -`` for addresses and
routes, ``ip netns exec NS nft -f -`` for rules, and :func:`inside` (``setns(2)`` on the
calling thread) for sysctls and sockets. veth pairs are created with both ends placed in their
namespaces by the same request, so no device ever exists in the caller's namespace.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from interkube.errors import LabError

NETNS_DIR = Path("/run/netns")
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def read_line(sock: socket.socket) -> str:
    """One line from a stream socket, stripped (up to the peer's close if it sends no newline):
    what the lab's TCP servers answer a connection with."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(512)
        if not chunk:
            break
        data += chunk
    return data.decode().strip()


def missing() -> str | None:
    """Why the lab cannot run here, or None: root, ``ip``, ``nft`` and network namespaces."""
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"the lab needs `{tool}` on PATH"
    if not Path("/proc/self/ns/net").exists():
        return "this kernel has no network namespaces"
    return None


def _run(argv: Sequence[str], stdin: str | None = None, what: str = "") -> str:
    proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise LabError(f"{what or ' '.join(argv)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def add(names: Iterable[str]) -> None:
    batch = "".join(f"netns add {n}\n" for n in names)
    if batch:
        _run(["ip", "-batch", "-"], batch, "creating network namespaces")


def existing(prefix: str) -> list[str]:
    """Namespaces whose name starts with ``prefix``."""
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(prefix))


def pids(name: str) -> list[int]:
    proc = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, check=False)
    return [int(x) for x in proc.stdout.split() if x.isdigit()]


def delete(names: Iterable[str]) -> list[str]:
    """Delete the namespaces that exist; returns the ones that failed (with why)."""
    failed = []
    for name in names:
        if not (NETNS_DIR / name).exists():
            continue
        proc = subprocess.run(["ip", "netns", "del", name], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            failed.append(f"{name}: {proc.stderr.strip()}")
    return failed


def veths(pairs: Iterable[tuple[str, str, str, str]]) -> None:
    batch = "".join(f"link add name {a_if} netns {a} type veth peer name {b_if} netns {b}\n"
                    for a, a_if, b, b_if in pairs)
    if batch:
        _run(["ip", "-batch", "-"], batch, "creating veth pairs")


def batch(name: str, commands: Sequence[str]) -> subprocess.Popen[str]:
    """Start ``ip -n NAME -batch -`` with ``commands``; :func:`finish` waits for it."""
    proc = subprocess.Popen(["ip", "-n", name, "-batch", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdin is not None
    proc.stdin.write("".join(f"{c}\n" for c in commands))
    proc.stdin.close()
    return proc


def nft(name: str, ruleset: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(["ip", "netns", "exec", name, "nft", "-f", "-"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdin is not None
    proc.stdin.write(ruleset)
    proc.stdin.close()
    return proc


def finish(jobs: dict[str, subprocess.Popen[str]], what: str) -> None:
    """Wait for every job; the first failure (namespace and ``ip``'s message) is raised."""
    errors = []
    for name, proc in jobs.items():
        assert proc.stderr is not None
        err = proc.stderr.read()
        if proc.wait() != 0:
            errors.append(f"{name}: {err.strip()}")
    if errors:
        raise LabError(f"{what}: " + "; ".join(errors))


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise LabError(f"setns: {os.strerror(err)}")


@contextmanager
def inside(name: str) -> Iterator[None]:
    """Run the block in network namespace ``name`` (this thread only), then come back.

    Sockets made inside stay in that namespace after the block, which is how the lab talks from
    a pod without a process in it.
    """
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        try:
            target = os.open(NETNS_DIR / name, os.O_RDONLY)
        except FileNotFoundError:
            raise LabError(f"network namespace {name} does not exist") from None
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)


def sysctls(name: str, values: dict[str, str]) -> None:
    """Write /proc/sys/net/KEY = value inside ``name`` (the files show the writer's namespace)."""
    with inside(name):
        for key, value in values.items():
            try:
                Path("/proc/sys/net", key).write_text(value)
            except FileNotFoundError:
                if "ipv6" not in key:  # a kernel without IPv6 lacks those, and the lab then has none
                    raise LabError(f"{name}: no sysctl net/{key}") from None


def socket_in(name: str, family: int, kind: int) -> socket.socket:
    with inside(name):
        return socket.socket(family, kind)


def stop(pids_: Iterable[int], timeout: float = 5.0) -> None:
    """SIGTERM each process, then SIGKILL the ones still there after ``timeout`` seconds."""
    import time

    alive = []
    for pid in pids_:
        try:
            os.kill(pid, signal.SIGTERM)
            alive.append(pid)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _running(p)]
        if alive:
            time.sleep(0.05)  # polling the processes' exit: nothing to wait on for non-children
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in alive:
        while _running(pid):
            time.sleep(0.01)


def _running(pid: int) -> bool:
    try:
        # A child that has exited stays a zombie until reaped; reap it if it is ours.
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (FileNotFoundError, IndexError):
        return False

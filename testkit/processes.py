"""Child processes of tests and benchmarks: tied to their parent's life, stopped by their PID,
their log files read back when they fail.

stdlib-only, like testkit/peers.py which uses it (``scripts/build-peers`` loads that by path).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from pathlib import Path


def die_with_parent() -> None:
    """In the child, before exec: get SIGKILL if the parent dies without tearing down, so a
    crashed or killed pytest (or benchmark) never leaves an API server or etcd behind.

    The kernel ties this to the *thread* that started the child: start processes from a thread
    that outlives them (not ``asyncio.to_thread``, whose worker ends with the event loop)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGTERM by PID, then SIGKILL if it does not go; reaps it either way."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout)


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a process's log file ("" when there is none)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])

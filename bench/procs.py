"""Processes the harness starts: pinned with taskset, logged to a file, stopped by their PID.

Also the two readings taken from /proc while a load runs: the peak resident memory of a server
(VmHWM, summed over its process tree, since dnsmasq forks per TCP connection and a multi-worker
server forks workers) and CPU time (of our processes, and of the whole machine, so that CPU
used by anything else during a run can be reported as noise rather than silently skewing it).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from testkit import waiting
from testkit.processes import die_with_parent, log_tail, stop_process

#: CPU the server under test is pinned to, and the one the load generator gets.
SERVER_CPU = 0
GENERATOR_CPU = 1

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_list(cpus: Sequence[int]) -> str:
    return ",".join(str(c) for c in cpus)


class StartFailed(RuntimeError):
    """A process exited, or did not become ready; the message ends with its log."""


class Proc:
    """One process started by the harness.

    ``taskset -c CPUS argv...`` execs argv, so the PID we hold is the program's own.
    """

    #: Every Proc still running, so that an interrupted run can stop them all by PID.
    live: ClassVar[set[Proc]] = set()

    def __init__(self, name: str, argv: Sequence[str | Path], log_path: Path, *,
                 cpus: Sequence[int] | None = None, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None, stdout_pipe: bool = False) -> None:
        self.name = name
        self.cpus = tuple(cpus) if cpus is not None else None
        prefix = ["taskset", "-c", cpu_list(self.cpus)] if self.cpus is not None else []
        self.argv = prefix + [str(a) for a in argv]
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.stdout_pipe = stdout_pipe
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} not started"
        return self.proc.pid

    def start(self) -> Proc:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # closed in stop()
        log.write(f"==== {' '.join(self.argv)}\n".encode())
        log.flush()
        self._log = log
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if self.stdout_pipe else log, stderr=log,
            env=self.env, cwd=self.cwd, preexec_fn=die_with_parent)
        Proc.live.add(self)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM by PID, SIGKILL after ``timeout``; reaps; returns the exit status."""
        proc = self.proc
        Proc.live.discard(self)
        if proc is None:
            return None
        stop_process(proc, timeout)
        with contextlib.suppress(Exception):
            self._log.close()
        return proc.returncode

    def log_tail(self, lines: int = 25) -> str:
        return log_tail(self.log_path, lines)

    def fail(self, what: str) -> StartFailed:
        return StartFailed(f"{self.name} {what}; log {self.log_path}:\n{self.log_tail()}")

    def tree(self) -> list[int]:
        """This PID and its descendants (workers, dnsmasq's TCP children)."""
        return process_tree(self.pid) if self.running() else []


class Adopted:
    """A process started by someone else for us (the kube-apiserver fixture's etcd and API
    server): only counted in CPU readings, so that its CPU is not taken for interference."""

    def __init__(self, name: str, pid: int) -> None:
        self.name = name
        self.pid = pid

    def tree(self) -> list[int]:
        return process_tree(self.pid) if Path(f"/proc/{self.pid}").exists() else []


@contextlib.contextmanager
def started(p: Proc) -> Iterator[Proc]:
    """Start ``p``; stop it by PID when the block ends, whatever happens."""
    p.start()
    try:
        yield p
    finally:
        p.stop()


def stop_all() -> None:
    """Stop every process still running (after an interrupt), each by its own PID."""
    for p in list(Proc.live):
        p.stop(timeout=3.0)


# --- /proc readings ----------------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    out = [pid]
    i = 0
    while i < len(out):
        p = out[i]
        i += 1
        for task in _listdir(f"/proc/{p}/task"):
            with contextlib.suppress(OSError):
                out.extend(int(c) for c in Path(f"/proc/{p}/task/{task}/children").read_text().split())
    return out


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def status_kib(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/PID/status (VmHWM, VmRSS); 0 if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _cpu_ticks(pid: int) -> list[int]:
    """utime, stime, cutime and cstime of /proc/PID/stat, in clock ticks; zeros if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return [int(f) for f in fields[11:15]]
    except (OSError, ValueError, IndexError):
        return [0, 0, 0, 0]


def proc_cpu_seconds(pid: int) -> float:
    """CPU seconds of one process and of its children that it has reaped (utime, stime,
    cutime, cstime); 0 if it is gone. Counting reaped children keeps dnsmasq's short-lived
    TCP children in the server's figure rather than lost between two readings."""
    return sum(_cpu_ticks(pid)) / _CLK_TCK


def proc_user_system_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds of one process in user mode and in the kernel (its system calls)."""
    utime, stime, _, _ = _cpu_ticks(pid)
    return utime / _CLK_TCK, stime / _CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds spent busy by all CPUs since boot (everything but idle and iowait)."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()
    vals = [int(v) for v in first[1:]]
    idle = vals[3] + vals[4]
    total = sum(vals[:8])  # guest time is already inside user/nice
    return (total - idle) / _CLK_TCK


def steal_seconds(cpu: int) -> float:
    """CPU seconds the hypervisor gave to others while ``cpu`` had work (``steal`` in
    /proc/stat since boot): on a VM, time a server pinned there could not run."""
    for line in Path("/proc/stat").read_text().splitlines():
        fields = line.split()
        if fields[0] == f"cpu{cpu}":
            return int(fields[8]) / _CLK_TCK
    return 0.0


class PeakRss:
    """Samples the summed VmHWM of a process tree while a load runs; keeps the maximum.

    For a single process the final VmHWM is exact; sampling only matters for children that
    come and go (dnsmasq's TCP children), whose peak is caught to within the sample period.
    """

    def __init__(self, proc: Proc, period: float = 0.2) -> None:
        self.proc = proc
        self.period = period
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        total = sum(status_kib(p, "VmHWM") for p in self.proc.tree())
        self.peak_kib = max(self.peak_kib, total)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.sample()

    def __enter__(self) -> PeakRss:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


class CpuMeter:
    """CPU used during a load run: by the given processes, and by the machine as a whole.

    ``foreign`` is what neither our processes nor the generator used: other work on the
    machine that competed with the measurement.
    """

    def __init__(self, procs: Sequence[Proc | Adopted]) -> None:
        self.procs = procs
        self.per_proc: dict[str, float] = {}
        self.ours = 0.0
        self.machine = 0.0
        self.wall = 0.0

    def _now(self) -> dict[tuple[str, int], float]:
        return {(p.name, pid): proc_cpu_seconds(pid) for p in self.procs for pid in p.tree()}

    def __enter__(self) -> CpuMeter:
        self._t0 = time.monotonic()
        self._m0 = machine_busy_seconds()
        self._o0 = self._now()
        return self

    def __exit__(self, *exc: object) -> None:
        o1 = self._now()
        self.machine = machine_busy_seconds() - self._m0
        self.wall = time.monotonic() - self._t0
        # Totals per tree, end minus start: a child that ended during the run moved its time
        # into its parent's reaped-children counters, one that started began from zero.
        for (name, _pid), v in o1.items():
            self.per_proc[name] = self.per_proc.get(name, 0.0) + v
        for (name, _pid), v in self._o0.items():
            self.per_proc[name] = self.per_proc.get(name, 0.0) - v
        self.ours = sum(self.per_proc.values())

    def foreign(self, generator_cpu: float) -> float:
        """Busy seconds of the machine not accounted for by ours + the generator's, >= 0."""
        return max(0.0, self.machine - self.ours - generator_cpu)


def settle(ours: Sequence[Proc | Adopted], limit: float = 30.0, threshold: float = 0.15,
           note: Callable[[float, bool], None] | None = None) -> None:
    """Wait up to ``limit`` seconds until programs other than ``ours`` use less than
    ``threshold`` of a core (the machine may be shared); what is left is measured, and printed
    as noise, by the caller. ``note(share, done)`` hears the first busy reading (done False)
    and, when there was one, the last (done True)."""
    deadline = time.monotonic() + limit
    waited = False
    while True:
        with CpuMeter(ours) as m:
            time.sleep(0.5)
        other = m.foreign(0.0) / m.wall
        done = other < threshold or time.monotonic() > deadline
        if note is not None and done == waited:
            note(other, done)
        if done:
            return
        waited = True


def wait_until(ready: Callable[[], bool], timeout: float, proc: Proc, what: str) -> None:
    """Poll ``ready()`` until true (a probe that raises means "not yet"); StartFailed, with the
    log, if ``proc`` exits first or ``timeout`` passes."""
    try:
        waiting.wait_until(ready, what, timeout, every=0.1, ignoring=(Exception,), alive=proc.running)
    except waiting.NeverHappened as exc:
        raise proc.fail(f"exited before {what}" if not proc.running() else f"not {what}: {exc}") from None

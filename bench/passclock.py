"""`interkube` with its UDP listeners' passes timed in CPU time (for bench/flood_probe.py).

    python -m bench.passclock STATS_FILE serve -conf Corefile ...

Runs ``interkube`` (the arguments after STATS_FILE) with one change: each wake-up of a UDP
listener's reader notes the server thread's CPU time (user and system, time.thread_time()), so
that the CPU spent from one wake-up to the next is known: one pass of the event loop, the longest
a datagram that arrives just after a wake-up waits before the next one reads it (on a machine
where the server has its core to itself, wall time and CPU time are the same). Unlike the
probe's latencies, it does not count the time other processes took the server's core: on a
shared machine it is the steadier figure of how long answers from memory are held.

On SIGUSR2 the passes noted since the previous SIGUSR2 are written to STATS_FILE (JSON: count,
p50, p99 and max in microseconds) and forgotten; the first SIGUSR2 starts the window.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from interkube import cli
from interkube.server import listeners

#: Passes kept between two SIGUSR2 (a flood's passes last milliseconds: minutes of them).
MAX_PASSES = 1_000_000


class PassClock:
    def __init__(self, stats: Path) -> None:
        self.stats = stats
        self.passes: list[float] = []
        self.last: float | None = None

    def wake(self) -> None:
        now = time.thread_time()
        if self.last is not None and len(self.passes) < MAX_PASSES:
            self.passes.append(now - self.last)
        self.last = now

    def dump(self, signum: int, frame: FrameType | None) -> None:
        passes, self.passes = sorted(self.passes), []
        self.last = None

        def pct(p: float) -> float:
            return passes[min(len(passes) - 1, int(p * len(passes)))] * 1e6 if passes else -1.0

        body = {"count": len(passes), "p50_us": pct(0.50), "p99_us": pct(0.99),
                "max_us": passes[-1] * 1e6 if passes else -1.0}
        tmp = self.stats.with_suffix(".tmp")
        tmp.write_text(json.dumps(body))
        os.replace(tmp, self.stats)  # whole or absent for the reader


def main() -> int:
    stats, args = Path(sys.argv[1]), sys.argv[2:]
    clock = PassClock(stats)
    readable = listeners.UdpEndpoint._readable

    def timed(self: listeners.UdpEndpoint) -> None:
        clock.wake()
        readable(self)

    listeners.UdpEndpoint._readable = timed  # type: ignore[method-assign]
    signal.signal(signal.SIGUSR2, clock.dump)
    return cli.main(args)


if __name__ == "__main__":
    sys.exit(main())

"""Zone transfers of a large zone file: how long an AXFR takes and what it costs the server, and
how long answers from memory wait while transfers run (the event loop's longest stall), with
CoreDNS 1.15 beside (same run).

    python bench/transfer_stream.py [--records 50000] [--rounds 3] [--probe-rate 500]

Each server (interkube, then CoreDNS when built: scripts/build-peers) serves one zone file of
RECORDS A records with `transfer { to * }`, pinned to CPU 0; this script runs on CPU 1. First a
probe alone: a UDP question for a name of the zone every 1/PROBE_RATE seconds, one at a time,
each reply timed (a second without one: lost). Then ROUNDS transfers, each read as fast as the
client can while the probe keeps asking: per transfer its wall time, records per second, the
messages it took and the server's CPU seconds; the probe's p50, p99 and longest wait during the
transfers against alone. interkube makes each message (16 KB of records) when the connection
takes it, so the longest wait is about one message's work; a server that made the whole
transfer at once would make the probe wait for all of it. On a busy machine the probe mostly
measures the machine (compare it with the probe alone); the steadier figure is the last part:
interkube in this process, one transfer read by dig, and the event loop's CPU time between two
turns of a 1 ms timer (the longest is the longest the loop was held), against no transfer.

Bounded in time: each server's start (parsing the zone), a few seconds of probe alone, ROUNDS
transfers (a transfer that stalls for 30 s ends the run). Every process started here is stopped
by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.procs import GENERATOR_CPU, SERVER_CPU, Proc, proc_cpu_seconds, stop_all, wait_until
from testkit.peers import find_peer
from testkit.servers import LOOPBACK, free_port, in_process, query

ZONE = "example.org"
PROBE_NAME = f"www.{ZONE}"
PROBE_IDLE_SECONDS = 3.0


def zone_text(records: int) -> str:
    return ("$TTL 300\n@ IN SOA ns hostmaster 1 7200 3600 1209600 300\n@ IN NS ns\nns IN A 192.0.2.53\n"
            "www IN A 192.0.2.1\n"
            + "".join(f"host-{i}.pool IN A 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}\n" for i in range(records)))


def corefile(port: int, db: Path) -> str:
    return f"{ZONE}:{port} {{\n    bind 127.0.0.1\n    transfer {{\n        to *\n    }}\n    file {db}\n}}\n"


def answering(port: int) -> bool:
    return bool(query(PROBE_NAME, "A", port, timeout=0.5).answer)


# --- the clients ------------------------------------------------------------------------------------


def axfr(port: int) -> tuple[float, int, int]:
    """One AXFR read as fast as it comes: (seconds, records, messages). It ends with the message
    that ends with the SOA record the first one began with (both servers write records
    uncompressed, and this query has no OPT record)."""
    wire = dns.message.make_query(ZONE, "AXFR").to_wire()
    question_end = len(wire)
    started = time.perf_counter()
    with socket.create_connection((LOOPBACK, port), timeout=30) as sock:
        sock.sendall(struct.pack("!H", len(wire)) + wire)
        stream = sock.makefile("rb")
        records = messages = 0
        soa = b""
        while True:
            head = stream.read(2)
            if len(head) < 2:
                raise SystemExit("the transfer ended early")
            body = stream.read(struct.unpack("!H", head)[0])
            messages += 1
            records += struct.unpack("!H", body[6:8])[0]
            if not soa:
                owner_end = body.index(b"\x00", question_end) + 1
                rdlen = struct.unpack("!H", body[owner_end + 8:owner_end + 10])[0]
                soa = body[question_end:owner_end + 10 + rdlen]
            if records > 1 and body.endswith(soa):
                break
    return time.perf_counter() - started, records, messages


class Probe:
    """Asks PROBE_NAME over UDP at a steady pace from a thread, one question at a time, and
    keeps each wait (seconds) and the questions that got no reply within a second."""

    def __init__(self, port: int, rate: float) -> None:
        self.port = port
        self.interval = 1.0 / rate
        self.waits: list[float] = []
        self.lost = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        wire = bytearray(dns.message.make_query(PROBE_NAME, "A").to_wire())
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(1.0)
            sock.connect((LOOPBACK, self.port))
            qid = 0
            next_at = time.perf_counter()
            while not self._stop.is_set():
                qid = (qid + 1) & 0xFFFF
                wire[0:2] = qid.to_bytes(2, "big")
                sent = time.perf_counter()
                sock.send(wire)
                try:
                    while True:
                        reply = sock.recv(4096)
                        if reply[:2] == wire[:2]:
                            break
                    self.waits.append(time.perf_counter() - sent)
                except TimeoutError:
                    self.lost += 1
                next_at = max(next_at + self.interval, time.perf_counter())
                self._stop.wait(max(0.0, next_at - time.perf_counter()))

    @contextlib.contextmanager
    def running(self) -> Iterator[Probe]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(5)


def summary(waits: list[float], lost: int) -> str:
    if not waits:
        return f"no replies, {lost} lost"
    q = statistics.quantiles(waits, n=100)
    return (f"p50 {q[49] * 1e3:6.2f} ms  p99 {q[98] * 1e3:7.2f} ms  max {max(waits) * 1e3:7.2f} ms  "
            f"({len(waits)} asked, {lost} lost)")


# --- the run ----------------------------------------------------------------------------------------


def measure(name: str, argv: list[str | Path], port: int, work: Path, rounds: int, rate: float) -> list[str]:
    server = Proc(name, argv, work / f"{name}.log", cpus=(SERVER_CPU,)).start()
    wait_until(functools.partial(answering, port), 300, server, "answering")
    with Probe(port, rate).running() as idle:
        time.sleep(PROBE_IDLE_SECONDS)  # the probe's pace is what is measured, not a synchronization
    times, rates, cpu, messages = [], [], [], 0
    with Probe(port, rate).running() as busy:
        for _ in range(rounds):
            before = proc_cpu_seconds(server.pid)
            seconds, records, messages = axfr(port)
            cpu.append(proc_cpu_seconds(server.pid) - before)
            times.append(seconds)
            rates.append(records / seconds)
    server.stop()
    return [f"{name}: AXFR of {records:,} records in {messages} messages: median {statistics.median(times):.2f} s "
            f"({statistics.median(rates):,.0f} records/s), server CPU {statistics.median(cpu):.2f} s per transfer; "
            f"rounds {', '.join(f'{t:.2f}' for t in times)} s",
            f"  probe alone:            {summary(idle.waits, idle.lost)}",
            f"  probe during transfers: {summary(busy.waits, busy.lost)}"]


async def loop_turns(db: Path, transfer: bool) -> list[float]:
    """interkube in this process: the loop's CPU seconds between turns of a 1 ms timer while dig
    reads a transfer of the zone (or, without ``transfer``, while it asks the SOA a few times)."""
    port = free_port()
    async with in_process(corefile(port, db)):
        turns: list[float] = []
        done = asyncio.Event()

        async def monitor() -> None:
            while not done.is_set():
                started = time.thread_time()
                await asyncio.sleep(0.001)
                turns.append(time.thread_time() - started)

        watching = asyncio.create_task(monitor())
        args = ["AXFR", ZONE] if transfer else ["SOA", ZONE]
        for _ in range(1 if transfer else 20):
            dig = await asyncio.create_subprocess_exec("dig", f"@{LOOPBACK}", "-p", str(port), *args,
                                                       stdout=asyncio.subprocess.DEVNULL)
            await asyncio.wait_for(dig.wait(), 120)
        done.set()
        await watching
    return turns


def turns_summary(turns: list[float]) -> str:
    q = statistics.quantiles(turns, n=100)
    return f"p50 {q[49] * 1e3:5.2f} ms  p99 {q[98] * 1e3:5.2f} ms  max {max(turns) * 1e3:6.2f} ms  ({len(turns)} turns)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=50_000, help="A records in the zone (default 50,000)")
    ap.add_argument("--rounds", type=int, default=3, help="transfers per server (default 3)")
    ap.add_argument("--probe-rate", type=float, default=500.0, help="probe questions per second (default 500)")
    opts = ap.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("needs two CPUs: the server on CPU 0, this script on CPU 1")
    os.sched_setaffinity(0, {GENERATOR_CPU})
    work = Path(tempfile.mkdtemp(prefix="interkube-bench-transfer-"))
    db = work / "db.example.org"
    db.write_text(zone_text(opts.records))
    coredns = find_peer("coredns")
    lines = [f"load before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"]
    try:
        port = free_port()
        (work / "Corefile").write_text(corefile(port, db))
        lines += measure("interkube", [sys.executable, "-m", "interkube", "serve", "-conf", work / "Corefile",
                                       "-quiet"], port, work, opts.rounds, opts.probe_rate)
        if coredns is not None:
            port = free_port()
            (work / "Corefile.coredns").write_text(corefile(port, db))
            lines += measure("coredns", [coredns, "-conf", work / "Corefile.coredns"], port, work, opts.rounds,
                             opts.probe_rate)
        else:
            lines.append("(CoreDNS not built: scripts/build-peers)")
        lines.append("interkube in process, the loop's CPU between two turns of a 1 ms timer:")
        lines.append(f"  asked SOA by dig:       {turns_summary(asyncio.run(loop_turns(db, False)))}")
        lines.append(f"  a transfer read by dig: {turns_summary(asyncio.run(loop_turns(db, True)))}")
    finally:
        stop_all()
    lines.append(f"load after: {os.getloadavg()[0]:.1f}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

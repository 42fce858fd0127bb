"""Memory and stalls under a UDP fuzz (issue 19, section 7): interkube's RSS must stay flat and
its event loop must not stall while a million fuzzed packets go by.

interkube (pinned to CPU 0) serves a cluster from a snapshot (`kubernetes`), a zone (`file`),
names from `hosts`, and forwards the rest (`cache`, `forward` to loadgen's responder). A fuzzer
process (CPU 1) sends datagrams: queries for random names in every zone (random types, flags,
EDNS), bit-flipped queries and random bytes, so that nearly every packet is a question never
seen before: what memoized parses, zone matches, templates and cache entries would keep per
name.

Two phases. The warm-up (``--warmup`` packets at ``--rate``) fills every bounded table (the
parse and zone memos, the cache, the negative templates) and measures the server's CPU time per
fuzz packet. Short calibration runs then find the rate at which the server is busy ``--load``
of the time. The measured phase (``--packets``, other names) runs at that rate (a server at
capacity queues, and a queue is not a stall: overload is the flood benchmark's subject,
bench/flood_probe.py), while this script asks a name
from memory every 5 ms and keeps the slowest answer of each second (a stall of the event loop
shows there), and reads the server's RSS twice a second.

    python3 bench/fuzz_memory.py [--packets 1000000] [--warmup 500000] [--load 0.6] [--seed 19]
                                 [--dnspython-negatives]

Goal (issue 19): RSS flat once warm (the last third of the measured fuzz grows it by < 5% over
its first third) and no stall above 50 ms. Loopback only; every process is stopped by its PID.

Most fuzzed names get a negative answer (NXDOMAIN, NODATA, hosts' SERVFAIL), written on the wire
(interkube.dns.negative) in a few µs; ``--dnspython-negatives`` runs the server with them built
through dnspython as before (INTERKUBE_NO_WIRE_NEGATIVE=1), for a before/after on one machine.
The server's CPU time per fuzz packet it read is printed too: unlike the stalls, it survives a
machine that other work shares (a server pinned to a busy core waits for it, and its answers
with it).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable as a script from anywhere

import dns.message

from bench import k8s
from bench.generators import Loadgen
from bench.procs import GENERATOR_CPU, SERVER_CPU, Proc, proc_cpu_seconds, status_kib, stop_all, wait_until
from bench.runner import Upstream
from testkit.servers import free_port, query

LOOPBACK = "127.0.0.1"
ZONES = ("cluster.local.", "example.org.", "mem.test.", "fwd.test.", "other.")
TYPES = (1, 28, 33, 16, 12, 5, 2, 6, 15, 255, 65, 64, 99, 252)
GOAL_GROWTH = 0.05
GOAL_STALL_MS = 50.0
#: Short runs that set the measured rate (see main()).
CALIBRATION_STEPS = 3
CALIBRATION_SECONDS = 4.0
#: The measured phase's rate never goes above this (the fuzzer's own comfortable ceiling).
MAX_RATE = 40_000.0
ZONE_FILE = """$ORIGIN example.org.
@ 3600 IN SOA ns h 1 7200 3600 1209600 3600
@ IN NS ns
ns IN A 127.0.0.1
www IN A 192.0.2.1
* IN TXT "wild"
"""


def log(msg: str) -> None:
    print(f"fuzz_memory: {msg}", flush=True)


def corefile(port: int, tmp: Path, upstream: int) -> str:
    return (f"cluster.local:{port} {{\n bind {LOOPBACK}\n errors\n kubernetes cluster.local {{\n"
            f"  snapshot {tmp / 'snapshot.yaml'}\n }}\n}}\n"
            f"example.org:{port} {{\n bind {LOOPBACK}\n errors\n file {tmp / 'example.db'}\n}}\n"
            f"mem.test:{port} {{\n bind {LOOPBACK}\n hosts {tmp / 'hosts'}\n}}\n"
            f".:{port} {{\n bind {LOOPBACK}\n errors\n cache\n forward . {LOOPBACK}:{upstream}\n}}\n")


# -- the fuzzer (runs as its own process: `fuzz_memory.py --fuzzer PORT COUNT RATE SEED`) -----------


def _label(rnd: random.Random) -> bytes:
    n = rnd.randint(1, 20)
    return bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz0123456789-_ABCZ") for _ in range(n))


def _name(rnd: random.Random) -> bytes:
    zone = rnd.choice(ZONES)
    labels = [_label(rnd) for _ in range(rnd.randint(1, 4))]
    out = b"".join(bytes((len(x),)) + x for x in labels)
    for part in zone.rstrip(".").split("."):
        out += bytes((len(part),)) + part.encode()
    return out + b"\x00"


def _query(rnd: random.Random) -> bytes:
    flags = rnd.choice((0x0100, 0x0000, 0x0110, 0x0120))
    edns = rnd.random() < 0.5
    head = struct.pack("!HHHHHH", rnd.getrandbits(16), flags, 1, 0, 0, 1 if edns else 0)
    body = _name(rnd) + struct.pack("!HH", rnd.choice(TYPES), 1)
    if edns:
        do = 0x8000 if rnd.random() < 0.3 else 0
        body += b"\x00" + struct.pack("!HHIH", 41, rnd.choice((512, 1232, 4096)), do, 0)
    return head + body


def packet(rnd: random.Random) -> bytes:
    r = rnd.random()
    if r < 0.6:
        return _query(rnd)
    if r < 0.85:  # a query with a few bytes flipped: mostly malformed, some odd but valid
        q = bytearray(_query(rnd))
        for _ in range(rnd.randint(1, 3)):
            q[rnd.randrange(2, len(q))] = rnd.getrandbits(8)
        return bytes(q)
    return bytes(rnd.getrandbits(8) for _ in range(rnd.randint(12, 80)))  # noise with a header's length


def fuzzer(port: int, count: int, rate: float, seed: int) -> None:
    from interkube.pkg import datagrams

    rnd = random.Random(seed)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.connect((LOOPBACK, port))
        sent = answered = 0
        start = time.monotonic()
        while sent < count:
            batch = [packet(rnd) for _ in range(min(64, count - sent))]
            try:
                datagrams.send_batch(s, list(batch))
            except OSError:
                pass  # a full buffer or a refused port: the rest of that batch is lost, as UDP may
            sent += len(batch)
            answered += _drain(s)
            ahead = sent / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
            if sent % 65536 < 64:
                print(sent, answered, flush=True)
        s.settimeout(0.5)  # the last answers: until half a second passes without one
        while True:
            try:
                s.recv(65535)
            except OSError:  # (TimeoutError, or an ICMP error)
                break
            answered += 1 + _drain(s)
    print(sent, answered, flush=True)


def _drain(s: socket.socket) -> int:
    """Read the answers waiting on the fuzzer's socket (counted: what the server answered)."""
    n = 0
    while True:
        try:
            s.recv(65535, socket.MSG_DONTWAIT)
        except OSError:  # (BlockingIOError when there is none)
            return n
        n += 1


# -- the measurement -------------------------------------------------------------------------------


class Probe(threading.Thread):
    """Asks a from-memory name every 5 ms; the slowest answer (or a loss) per second."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.seconds: list[tuple[float, int, int]] = []  # (max ms, asked, lost)
        self.answers: list[float] = []  # each answer's ms

    def run(self) -> None:
        wire = dns.message.make_query("p0.mem.test.", "A").to_wire()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((LOOPBACK, self.port))
            s.settimeout(1.0)
            worst, asked, lost, second = 0.0, 0, 0, time.monotonic()
            while not self.stop.is_set():
                t = time.monotonic()
                s.send(wire)
                asked += 1
                try:
                    while s.recv(512)[:2] != wire[:2]:
                        pass
                    took = (time.monotonic() - t) * 1000
                    self.answers.append(took)
                    worst = max(worst, took)
                except TimeoutError:
                    lost += 1
                now = time.monotonic()
                if now - second >= 1.0:
                    self.seconds.append((worst, asked, lost))
                    worst, asked, lost, second = 0.0, 0, 0, now
                self.stop.wait(max(0.0, 0.005 - (time.monotonic() - t)))


def fuzz(port: int, count: int, rate: float, seed: int,
         samples: list[tuple[float, int, int]] | None) -> tuple[int, int]:
    """Runs the fuzzer process to the end (bounded: killed past three times its expected
    duration plus a minute); appends (seconds, packets sent, server RSS KiB) to ``samples``
    twice a second. Returns the packets sent and the answers the fuzzer received."""
    server_pid = _SERVER_PID[0]
    proc = subprocess.Popen(["taskset", "-c", str(GENERATOR_CPU), sys.executable, __file__, "--fuzzer",
                             str(port), str(count), str(rate), str(seed)],
                            stdout=subprocess.PIPE, text=True)
    progress = [0, 0]

    def follow() -> None:  # the fuzzer prints how many it has sent and had answered, now and then
        assert proc.stdout is not None
        for line in proc.stdout:
            sent, answered = line.split()
            progress[:] = [int(sent), int(answered)]

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    t0 = time.monotonic()
    deadline = t0 + count / rate * 3 + 60
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if samples is not None:
                samples.append((time.monotonic() - t0, progress[0], status_kib(server_pid, "VmRSS")))
            time.sleep(0.5)  # a sampling period, not synchronisation
        if proc.poll() is None:
            log("the fuzzer overstayed its bound and was killed")
    finally:
        proc.kill()
        proc.wait()
    reader.join(5)
    if samples is not None:
        samples.append((time.monotonic() - t0, progress[0], status_kib(server_pid, "VmRSS")))
    return progress[0], progress[1]


def settle(pid: int, bound: float = 60.0) -> None:
    """Wait (at most ``bound`` seconds) until the server has worked off what is queued: a whole
    second with under 5% of a core busy."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        cpu0 = proc_cpu_seconds(pid)
        time.sleep(1.0)  # a measuring period, not synchronisation
        if proc_cpu_seconds(pid) - cpu0 < 0.05:
            return


def udp_drops(port: int) -> int:
    """Datagrams the kernel dropped at the receive buffer of the UDP socket bound to ``port``
    (the last column of /proc/net/udp)."""
    total = 0
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port:
            total += int(fields[-1])
    return total


#: The server's PID, for fuzz()'s RSS samples.
_SERVER_PID = [0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--warmup", type=int, default=500_000, help="packets that fill the tables first")
    ap.add_argument("--rate", type=float, default=MAX_RATE, help="warm-up packets per second")
    ap.add_argument("--load", type=float, default=0.6,
                    help="the server's busy share to run the measured phase at (calibrated)")
    ap.add_argument("--seed", type=int, default=19)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--dnspython-negatives", action="store_true",
                    help="negative answers built through dnspython, as before they were written on the wire")
    ap.add_argument("--fuzzer", nargs=4, metavar=("PORT", "COUNT", "RATE", "SEED"), help=argparse.SUPPRESS)
    opts = ap.parse_args()
    if opts.fuzzer:
        port, count, rate, seed = opts.fuzzer
        fuzzer(int(port), int(count), float(rate), int(seed))
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="fuzz_memory-"))
    (tmp / "example.db").write_text(ZONE_FILE)
    (tmp / "hosts").write_text("".join(f"10.0.0.{i + 1} p{i}.mem.test\n" for i in range(100)))
    k8s.write_snapshot(tmp / "snapshot.yaml", k8s.services(200, 50))
    gen = Loadgen()
    up = Upstream(gen, 60, tmp).start()
    port = free_port()
    (tmp / "Corefile").write_text(corefile(port, tmp, up.port))
    env = {**os.environ, "INTERKUBE_NO_WIRE_NEGATIVE": "1"} if opts.dnspython_negatives else None
    server = Proc("interkube", [sys.executable, "-m", "interkube", "serve", "-conf", str(tmp / "Corefile")],
                  tmp / "interkube.log", cpus=(SERVER_CPU,), env=env)
    samples: list[tuple[float, int, int]] = []  # (seconds, packets sent, RSS KiB)
    probe = Probe(port)
    ok = True
    try:
        server.start()
        _SERVER_PID[0] = server.pid
        wait_until(lambda: query("p0.mem.test.", "A", port, timeout=0.5).rcode() == 0, 30, server, "answering")
        rss0 = status_kib(server.pid, "VmRSS")
        if opts.warmup:
            cpu0, drops0 = proc_cpu_seconds(server.pid), udp_drops(port)
            warm, _ = fuzz(port, opts.warmup, opts.rate, opts.seed + 1, None)
            # (packets the kernel dropped at a full buffer cost the server nothing)
            per_packet = (proc_cpu_seconds(server.pid) - cpu0) / max(1, warm - (udp_drops(port) - drops0))
            capacity = 1 / per_packet if per_packet > 0 else MAX_RATE
        else:
            capacity = opts.rate / opts.load
        # A server reading a full socket amortizes each wake-up over a batch; at a lower rate it
        # reads fewer datagrams per wake-up and spends more per packet, so the warm-up's figure
        # overstates what it sustains at the measured rate. Calibrate: short runs at the
        # candidate rate, scaled by the busy share they show, until it is the one asked for.
        rate = min(MAX_RATE, capacity * opts.load)
        for step in range(CALIBRATION_STEPS):
            settle(server.pid)  # (what the warm-up left queued is no part of this rate's cost)
            cpu0, t0 = proc_cpu_seconds(server.pid), time.monotonic()
            fuzz(port, int(rate * CALIBRATION_SECONDS), rate, opts.seed + 2 + step, None)
            busy = (proc_cpu_seconds(server.pid) - cpu0) / (time.monotonic() - t0)
            log(f"calibration: {rate:,.0f}/s kept the server busy {busy:.0%} (aiming at {opts.load:.0%})")
            rate = min(MAX_RATE, rate * opts.load / max(busy, 0.01))
        settle(server.pid)
        rss_warm = status_kib(server.pid, "VmRSS")
        log(f"warm-up: {opts.warmup:,d} packets (server capacity for this mix ~{capacity:,.0f}/s when "
            f"reading full batches); RSS {rss_warm / 1024:.1f} MiB; the measured phase runs at {rate:,.0f}/s")
        probe.start()
        cpu0, drops0 = proc_cpu_seconds(server.pid), udp_drops(port)
        t0 = time.monotonic()
        sent, answered = fuzz(port, opts.packets, rate, opts.seed, samples)
        elapsed = time.monotonic() - t0
        cpu = proc_cpu_seconds(server.pid) - cpu0
        busy = cpu / elapsed
        dropped = udp_drops(port) - drops0
        probe.stop.set()
        probe.join(5)
        alive = server.running()
    finally:
        probe.stop.set()
        server.stop()
        up.stop()
        stop_all()
        if opts.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(f"{'time':>6s} {'packets':>10s} {'RSS MiB':>8s}")
    step = max(1, len(samples) // 24)
    for t, n, rss in samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else []):
        print(f"{t:6.1f} {n:10,d} {rss / 1024:8.1f}")
    third = max(1, len(samples) // 3)
    early = max(r for _, _, r in samples[:third])
    late = max(r for _, _, r in samples[-third:])
    growth = late / early - 1
    stalls = [w for w, _, _ in probe.seconds]
    lost = sum(lo for _, _, lo in probe.seconds)
    asked = sum(a for _, a, _ in probe.seconds)
    worst = max(stalls, default=0.0)
    slow_seconds = sum(1 for w in stalls if w > GOAL_STALL_MS)
    print()
    print(f"RSS: {rss0 / 1024:.1f} MiB at start, {rss_warm / 1024:.1f} MiB after the warm-up, peak "
          f"{max(r for _, _, r in samples) / 1024:.1f} MiB; "
          f"last third vs first third of the measured fuzz: {growth:+.1%} (goal < {GOAL_GROWTH:.0%}: "
          f"{'met' if growth < GOAL_GROWTH else 'short'})")
    print(f"probe (a from-memory name every 5 ms): {asked:,d} asked, {lost:,d} lost; slowest answer {worst:.1f} ms; "
          f"{slow_seconds} of {len(stalls)} seconds had one above {GOAL_STALL_MS:.0f} ms "
          f"(goal none: {'met' if slow_seconds == 0 else 'short'})")
    print(f"server {'still running' if alive else 'DIED'}; {sent:,d} packets sent at {rate:,.0f}/s "
          f"(calibrated for a busy share of {opts.load:.0%}; {sent / elapsed:,.0f}/s reached); the server was busy "
          f"{busy:.0%} of the time; {dropped:,d} dropped at its full receive buffer")
    answers = sorted(probe.answers) or [0.0]
    print(f"probe answers: p50 {answers[len(answers) // 2]:.2f} ms, p99 {answers[len(answers) * 99 // 100]:.2f} ms")
    print(f"the fuzzer had {answered:,d} answers ({answered / max(1, sent):.0%} of what it sent); the server's "
          f"CPU per fuzz packet read {cpu / max(1, sent - dropped) * 1e6:.1f} µs, per answer "
          f"{cpu / max(1, answered) * 1e6:.1f} µs (negative answers "
          f"{'built through dnspython' if opts.dnspython_negatives else 'written on the wire'})")
    print("(figures from a shared machine are noisy: re-run on a quiet one with the same command)")
    ok = alive and growth < GOAL_GROWTH and slow_seconds == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

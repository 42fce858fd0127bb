"""Load generators: our own C program (``loadgen``) and dnsperf, behind one interface.

Both read the same query file (dnsperf's ``NAME TYPE`` lines) and produce a :class:`LoadResult`
whose ``generator`` field names the program that produced the figures; the report prints it
beside every figure.
"""

from __future__ import annotations

import hashlib
import json
import re
import resource
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.procs import GENERATOR_CPU, cpu_list

LOADGEN_SOURCE = Path(__file__).with_name("loadgen") / "loadgen.c"
CACHE_DIR = Path.home() / ".cache" / "interkube" / "bench"


@dataclass
class LoadSpec:
    """One load run: where, what, how (closed loop when ``rate`` is 0), and its bounds."""

    port: int
    query_file: Path
    transport: str = "udp"           # udp | tcp
    rate: float = 0.0                # 0: closed loop; else offered queries/s (open loop)
    duration: float = 5.0            # seconds of load; outstanding queries then get `timeout`
    conns: int = 8                   # UDP sockets or TCP connections
    window: int = 16                 # closed loop: outstanding queries per socket/connection
    timeout: float = 1.0             # seconds before a query counts as lost
    count: int = 0                   # stop after this many queries (0: duration only)
    cpus: tuple[int, ...] = (GENERATOR_CPU,)
    host: str = "127.0.0.1"
    quickack: bool = False           # TCP, loadgen only: ACK every read at once (TCP_QUICKACK)

    @property
    def loop(self) -> str:
        return "open" if self.rate > 0 else "closed"


@dataclass
class LoadResult:
    """What one load run measured. Latencies in microseconds; -1 when nothing came back."""

    generator: str
    transport: str
    loop: str
    offered_rate: float
    duration: float
    sent: int
    received: int
    timeouts: int
    qps: float
    p50_us: float
    p99_us: float
    mean_us: float
    rcodes: dict[str, int]
    cpu_s: float                     # CPU the generator itself used
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def loss(self) -> float:
        """Fraction of the queries sent that got no answer in time."""
        return self.timeouts / self.sent if self.sent else 0.0

    @property
    def generator_bound(self) -> bool:
        """The generator was busy at least 90% of the run: the figure may be its ceiling."""
        return self.duration > 0 and self.cpu_s / self.duration >= 0.9

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["loss"] = self.loss
        d["generator_bound"] = self.generator_bound
        return d


class GeneratorMissing(RuntimeError):
    """The generator cannot run here; the message says why."""


def _bounded_timeout(spec: LoadSpec) -> float:
    """How long a generator process may live: its run, the drain, and a margin; then killed."""
    return spec.duration + spec.timeout + 15.0


class Loadgen:
    """Our C generator, compiled at run time with the machine's gcc into a cache directory."""

    name = "loadgen"

    def __init__(self, cache_dir: Path = CACHE_DIR) -> None:
        self.cache_dir = cache_dir
        self._binary: Path | None = None

    def binary(self) -> Path:
        """The compiled program, rebuilt when the source changes (keyed by its hash)."""
        if self._binary is not None:
            return self._binary
        gcc = shutil.which("gcc") or shutil.which("cc")
        if gcc is None:
            raise GeneratorMissing("no C compiler (gcc) on PATH to build bench/loadgen/loadgen.c")
        digest = hashlib.sha256(LOADGEN_SOURCE.read_bytes()).hexdigest()[:16]
        out = self.cache_dir / f"loadgen-{digest}"
        if not out.is_file():
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(".partial")
            done = subprocess.run([gcc, "-O2", "-Wall", "-o", str(tmp), str(LOADGEN_SOURCE)],
                                  capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise GeneratorMissing(f"building loadgen failed:\n{done.stderr}")
            tmp.replace(out)  # rename last: an interrupted build never looks finished
        self._binary = out
        return out

    def argv(self, spec: LoadSpec) -> list[str]:
        return [str(self.binary()), spec.transport, "-s", spec.host, "-p", str(spec.port),
                "-f", str(spec.query_file), "-c", str(spec.conns), "-w", str(spec.window),
                "-r", str(spec.rate), "-d", str(spec.duration), "-n", str(spec.count),
                "-t", str(int(spec.timeout * 1000)), *(["-q"] if spec.quickack else [])]

    def run(self, spec: LoadSpec) -> LoadResult:
        cmd = ["taskset", "-c", cpu_list(spec.cpus), *self.argv(spec)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=_bounded_timeout(spec),
                              check=False)
        if done.returncode != 0:
            raise RuntimeError(f"loadgen failed ({done.returncode}): {done.stderr.strip()}")
        d = json.loads(done.stdout)
        lat = d["latency_us"]
        return LoadResult(
            generator=self.name, transport=spec.transport, loop=spec.loop,
            offered_rate=spec.rate, duration=d["elapsed_s"], sent=d["sent"],
            received=d["received"], timeouts=d["timeouts"], qps=d["qps"],
            p50_us=lat["p50"], p99_us=lat["p99"], mean_us=lat["mean"], rcodes=d["rcodes"],
            cpu_s=d["cpu_s"], detail={k: d[k] for k in (
                "conns", "window", "answered", "unmatched", "truncated", "send_errors",
                "bad_messages", "reconnects", "id_exhausted", "drain_s")} | {"latency_us": lat})

    def responder_argv(self, port: int | None = None, ttl: int = 0) -> list[str]:
        """The upstream for forwarding scenarios (see the comment at the top of loadgen.c);
        without ``port``, the command up to where the port goes."""
        argv = [str(self.binary()), "respond", "-s", "127.0.0.1"]
        return argv if port is None else [*argv, "-p", str(port), "-T", str(ttl)]


_DNSPERF_LINE = re.compile(r"^> (\S+) \S+ \S+ ([0-9.]+)$")


class Dnsperf:
    """dnsperf (Debian package) as the second generator.

    Closed loop: ``-c CONNS -q CONNS*WINDOW`` outstanding. Open loop: ``-Q RATE -v``, and the
    percentiles are computed here from the per-response latencies that ``-v`` prints.
    """

    name = "dnsperf"

    def __init__(self) -> None:
        self.path = shutil.which("dnsperf")

    def check(self) -> None:
        if self.path is None:
            raise GeneratorMissing("dnsperf is not installed (Debian package dnsperf)")

    def run(self, spec: LoadSpec) -> LoadResult:
        self.check()
        assert self.path is not None
        cmd = ["taskset", "-c", cpu_list(spec.cpus), self.path, "-s", spec.host,
               "-p", str(spec.port), "-d", str(spec.query_file), "-l", str(spec.duration),
               "-c", str(spec.conns), "-T", "1", "-t", str(spec.timeout),
               "-m", spec.transport]
        if spec.rate > 0:
            cmd += ["-Q", str(int(spec.rate)), "-q", "65535", "-v"]
        else:
            cmd += ["-q", str(spec.conns * spec.window)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=_bounded_timeout(spec),
                              check=False)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        if done.returncode != 0:
            raise RuntimeError(f"dnsperf failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        return self._parse(done.stdout, spec, cpu)

    def _parse(self, out: str, spec: LoadSpec, cpu: float) -> LoadResult:
        def num(label: str) -> float:
            m = re.search(rf"^\s*{re.escape(label)}:\s+([0-9.]+)", out, re.M)
            if m is None:
                raise RuntimeError(f"dnsperf output has no '{label}':\n{out[-800:]}")
            return float(m.group(1))

        sent = int(num("Queries sent"))
        completed = int(num("Queries completed"))
        lost = int(num("Queries lost"))
        runtime = num("Run time (s)")
        rcodes: dict[str, int] = {}
        m = re.search(r"^\s*Response codes:\s+(.*)$", out, re.M)
        if m:
            for code, n in re.findall(r"([A-Z]+) (\d+) \(", m.group(1)):
                rcodes[code] = int(n)
        lats = sorted(float(x.group(2)) * 1e6 for x in map(_DNSPERF_LINE.match, out.splitlines())
                      if x is not None and x.group(1) != "T")

        def pct(q: float) -> float:
            return lats[min(len(lats) - 1, int(q * len(lats)))] if lats else -1.0

        avg = num("Average Latency (s)") * 1e6
        p50, p99 = (pct(0.5), pct(0.99)) if lats else (-1.0, -1.0)
        # TCP, DoT, DoH: dnsperf adds how often its connections were re-opened and how long
        # opening one took (the TLS handshake included).
        conn: dict[str, Any] = {}
        stats = out.split("Connection Statistics:", 1)
        if len(stats) == 2:
            m = re.search(r"^\s*Reconnections:\s+(\d+)", stats[1], re.M)
            if m:
                conn["reconnects"] = int(m.group(1))
            m = re.search(r"^\s*Average Latency \(s\):\s+([0-9.]+)", stats[1], re.M)
            if m:
                conn["connect_latency_us"] = float(m.group(1)) * 1e6
        return LoadResult(
            generator=self.name, transport=spec.transport, loop=spec.loop,
            offered_rate=spec.rate, duration=runtime, sent=sent, received=completed,
            timeouts=lost, qps=num("Queries per second"), p50_us=p50, p99_us=p99, mean_us=avg,
            rcodes=rcodes, cpu_s=cpu,
            detail={"conns": spec.conns, "max_outstanding": spec.conns * spec.window
                    if spec.rate <= 0 else 65535,
                    "percentiles_from": "per-response -v lines" if lats else "none (closed loop)"}
            | conn)


def make_generators(names: list[str]) -> list[Loadgen | Dnsperf]:
    out: list[Loadgen | Dnsperf] = []
    for n in names:
        if n == "loadgen":
            out.append(Loadgen())
        elif n == "dnsperf":
            out.append(Dnsperf())
        else:
            sys.exit(f"bench: unknown generator {n!r} (loadgen, dnsperf)")
    return out

"""Runs the scenarios: sets up what each needs, starts each server pinned, checks its answers,
drives the load and collects the figures.

Per server and generator: a closed-loop run (a fixed window of queries outstanding per socket:
the maximum QPS) and an open-loop run (a fixed offered rate: p50/p99 latency at that rate).
Each run is bounded by its duration plus the query timeout; every process is stopped by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from bench import dot, k8s
from bench.generators import Dnsperf, GeneratorMissing, Loadgen, LoadResult, LoadSpec
from bench.procs import (
    GENERATOR_CPU,
    SERVER_CPU,
    Adopted,
    CpuMeter,
    PeakRss,
    Proc,
    StartFailed,
    settle,
    started,
    wait_until,
)
from bench.scenarios import Scenario
from bench.servers import Context, Launch, Server, servers_for
from testkit.servers import free_port

LOOPBACK = "127.0.0.1"


@dataclass
class Settings:
    duration: float = 5.0
    warmup: float = 1.0
    rate: float = 10_000.0
    timeout: float = 1.0
    conns: int = 8
    window: int = 32
    tcp_conns: int = 4
    tcp_quickack: bool = False
    servers: list[str] = field(default_factory=list)
    loop: str | None = None
    keep: bool = False
    repeat: int = 1                   # closed-loop runs per server; the best QPS is reported
    settle: float = 30.0              # seconds to wait for other work on the machine to stop
    settle_threshold: float = 0.15    # "quiet": others use less than this share of one core
    noisy_retries: int = 2            # extra runs when others used > NOISY of a core meanwhile


@dataclass
class GenRuns:
    """One generator's two runs against one server."""

    generator: str
    closed: LoadResult | None = None
    open: LoadResult | None = None
    server_cpu_s: float = 0.0          # server CPU during the closed-loop run
    noise_cpu_s: float = 0.0           # CPU used by anything else on the machine then
    open_noise_cpu_s: float = 0.0      # the same during the open-loop run
    upstream_per_answer: float | None = None  # forwarding: upstream queries per client answer
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"generator": self.generator,
                "closed": self.closed.to_json() if self.closed else None,
                "open": self.open.to_json() if self.open else None,
                "server_cpu_s": self.server_cpu_s, "noise_cpu_s": self.noise_cpu_s,
                "open_noise_cpu_s": self.open_noise_cpu_s,
                "upstream_per_answer": self.upstream_per_answer, "error": self.error}


@dataclass
class ServerResult:
    key: str                           # unbound, dnsmasq, ... (goals refer to these)
    label: str                         # what the table prints
    workers: int
    status: str                        # ok | skipped | failed | wrong-answers
    reason: str = ""
    version: str = ""
    cpus: tuple[int, ...] = ()
    peak_rss_kib: int = 0
    answers_checked: int = 0
    tls: str = ""                      # S6: TLS version and cipher the answer check negotiated
    runs: list[GenRuns] = field(default_factory=list)

    def run(self, generator: str) -> GenRuns | None:
        return next((r for r in self.runs if r.generator == generator and r.closed), None)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["runs"] = [r.to_json() for r in self.runs]
        return d


@dataclass
class ScenarioResult:
    id: str
    title: str
    transport: str
    setup: list[str] = field(default_factory=list)  # how cores are shared, what was prepared
    servers: list[ServerResult] = field(default_factory=list)

    def find(self, key: str, workers: int = 1) -> ServerResult | None:
        return next((s for s in self.servers if s.key == key and s.workers == workers), None)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "transport": self.transport,
                "setup": self.setup, "servers": [s.to_json() for s in self.servers]}


def log(msg: str) -> None:
    print(f"bench: {msg}", flush=True)


# --- the upstream of the forwarding scenarios ---------------------------------------------


class Upstream:
    """loadgen's responder: answers every name; counts what it is asked (read via SIGUSR1)."""

    def __init__(self, loadgen: Loadgen, ttl: int, workdir: Path) -> None:
        self.port = free_port()
        self.proc = Proc("upstream", loadgen.responder_argv(self.port, ttl),
                         workdir / "upstream.log", cpus=(GENERATOR_CPU,), stdout_pipe=True)
        self._buf = b""

    def _line(self, timeout: float = 5.0) -> dict[str, Any]:
        assert self.proc.proc is not None and self.proc.proc.stdout is not None
        fd = self.proc.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise self.proc.fail("did not report")
            chunk = os.read(fd, 4096)
            if not chunk:
                raise self.proc.fail("exited")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        report: dict[str, Any] = json.loads(line)
        return report

    def start(self) -> Upstream:
        self.proc.start()
        self._line()  # {"ready": true}
        return self

    def received(self) -> int:
        os.kill(self.proc.pid, signal.SIGUSR1)
        return int(self._line()["received"])

    def stop(self) -> None:
        self.proc.stop()


# --- DNS checks ----------------------------------------------------------------------------


def _query(name: str, port: int, transport: str = "udp", timeout: float = 1.0,
           pki: dot.Pki | None = None) -> dns.message.Message:
    """One A query over the scenario's transport (DoT: trusting only the run's CA)."""
    if transport == "dot":
        assert pki is not None, "DoT needs the run's certificates"
        return dot.query(pki, name, port, timeout)
    q = dns.message.make_query(name, "A")
    if transport == "tcp":
        return dns.query.tcp(q, LOOPBACK, port=port, timeout=timeout)
    return dns.query.udp(q, LOOPBACK, port=port, timeout=timeout, ignore_unexpected=True)


def _addresses(msg: dns.message.Message) -> list[str]:
    return sorted(r.to_text() for rrset in msg.answer if rrset.rdtype == dns.rdatatype.A
                  for r in rrset)


def sample_names(sc: Scenario, n: int = 10) -> list[str]:
    step = max(1, len(sc.names) // n)
    return list(dict.fromkeys(sc.names[:3] + sc.names[::step]))[:n + 3]


def check_answers(sc: Scenario, port: int, pki: dot.Pki | None = None) -> tuple[int, list[str]]:
    """Ask a sample of the scenario's names; return how many were checked and what differed."""
    bad: list[str] = []
    names = sample_names(sc)
    for name in names:
        try:
            msg = _query(name, port, sc.transport, timeout=2.0, pki=pki)
        except Exception as exc:  # any failure is a wrong answer here
            bad.append(f"{name}: {type(exc).__name__}")
            continue
        got, want = _addresses(msg), sc.expected(name)
        if msg.rcode() != dns.rcode.NOERROR or got != want:
            bad.append(f"{name}: {dns.rcode.to_text(msg.rcode())} {got} (want {want})")
    return len(names), bad


def _ready_probe(sc: Scenario, port: int, pki: dot.Pki | None = None) -> bool:
    """Whether the server answers (raising means "not yet"). UDP for UDP and TCP scenarios, as
    every server there also serves UDP; DoT where the block serves only TLS."""
    name = sc.names[0]
    msg = _query(name, port, "dot" if sc.transport == "dot" else "udp", timeout=0.5, pki=pki)
    if sc.kind == "k8s":
        # The kubernetes plugin answers before its informers have synced; wait for data.
        return _addresses(msg) == sc.expected(name)
    return True


@contextlib.contextmanager
def serving(sc: Scenario, server: Server, ctx: Context, wd: Path) -> Iterator[tuple[Proc, int, Launch]]:
    """``server`` configured for ``sc`` in ``wd`` (its log: wd/server.log), started pinned on a
    free port of 127.0.0.1 and answering there; stopped by its PID when the block ends."""
    port = free_port()
    launch = server.launch(sc, ctx, port, wd)
    proc = Proc(server.label, launch.argv, wd / "server.log", cpus=launch.cpus,
                env=launch.env, cwd=launch.cwd)
    with started(proc):
        # (a server reading a snapshot of 100,000 Services takes minutes on a busy machine)
        wait_until(lambda: _ready_probe(sc, port, ctx.pki),
                   max(120.0, sc.k8s_services / 250) if sc.kind == "k8s" else 30.0,
                   proc, f"answering on 127.0.0.1:{port}")
        yield proc, port, launch


# --- the runner ----------------------------------------------------------------------------


class Runner:
    def __init__(self, settings: Settings, generators: list[Loadgen | Dnsperf],
                 loadgen: Loadgen, workdir: Path) -> None:
        self.s = settings
        self.generators = generators
        self.loadgen = loadgen
        self.workdir = workdir
        self._upstream: Upstream | None = None
        self._adopted: list[Adopted] = []  # processes of the scenario's setup, for CPU readings

    # setup around a scenario

    @contextlib.contextmanager
    def context(self, sc: Scenario, res: ScenarioResult) -> Iterator[Context]:
        ctx = Context(loop=self.s.loop, responder_argv=self.loadgen.responder_argv())
        wd = self.workdir / sc.id
        wd.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:
            if sc.forwarding:
                assert sc.upstream_ttl is not None
                up = Upstream(self.loadgen, sc.upstream_ttl, wd).start()
                stack.callback(up.stop)
                ctx.upstream_port = up.port
                self._upstream = up
                res.setup.append(
                    f"upstream: loadgen's responder (C, recvmmsg/sendmmsg, TTL {sc.upstream_ttl}) "
                    f"on 127.0.0.1:{up.port}, pinned to CPU {GENERATOR_CPU} (shared with the load "
                    "generator; it is idle in S2 once the caches are warm)")
            else:
                self._upstream = None
            if sc.transport == "dot":
                ctx.pki = dot.make_pki(wd / "pki")
                res.setup.append(
                    f"TLS: a CA and a server certificate for {ctx.pki.server_name} and 127.0.0.1 "
                    f"(EC P-256) made for this run ({ctx.pki.cert.parent}); every server serves "
                    "them, the answer check trusts only that CA and checks the name")
            if sc.kind == "k8s":
                svcs = k8s.services(sc.k8s_services)
                if "interkube" in self.s.servers:
                    t = time.monotonic()
                    ctx.snapshot = k8s.write_snapshot(wd / "snapshot.yaml", svcs)
                    res.setup.append(f"snapshot: {len(svcs):,} Services + EndpointSlices as "
                                     f"`kubectl get services,endpointslices -A -o yaml` writes "
                                     f"them, {ctx.snapshot.stat().st_size / 2**20:.1f} MiB, "
                                     f"{time.monotonic() - t:.1f}s to write ({ctx.snapshot})")
                if "coredns" in self.s.servers:
                    stack.enter_context(self._kube_api(ctx, svcs, wd, res))
            yield ctx

    @contextlib.contextmanager
    def _kube_api(self, ctx: Context, svcs: list[k8s.K8sService], wd: Path,
                  res: ScenarioResult) -> Iterator[None]:
        """A real kube-apiserver + etcd for CoreDNS's kubernetes plugin, when the fixture works."""
        from testkit.peers import find_peer, skip_message

        problem = k8s.beyond_api_server(svcs)
        if problem:
            ctx.kube_skip = problem
            yield
            return
        missing = [n for n in ("kube-apiserver", "etcd") if find_peer(n) is None]
        if missing:
            ctx.kube_skip = "; ".join(skip_message(n) for n in missing)
            yield
            return
        try:
            from testkit.kubeapi import KubeAPI
        except Exception as exc:  # a fixture that does not import does not work
            ctx.kube_skip = f"the kube-apiserver fixture does not import: {exc}"
            yield
            return
        apiserver, etcd = find_peer("kube-apiserver"), find_peer("etcd")
        assert apiserver is not None and etcd is not None
        api = KubeAPI(wd / "kubeapi", apiserver, etcd)
        try:
            log("starting kube-apiserver + etcd (testkit.kubeapi) for CoreDNS ...")
            api.start()
            # Off the server's core: they share the generator's CPU, and sit idle (watches
            # open, nothing changing) while the load runs.
            for p in (api.etcd.process, api.apiserver):
                if p.pid:
                    self._adopted.append(Adopted(p.name, p.pid))
                    for pid in _tree(p.pid):
                        for task in os.listdir(f"/proc/{pid}/task"):  # Go: every thread
                            with contextlib.suppress(OSError):
                                os.sched_setaffinity(int(task), {GENERATOR_CPU})
            log(f"creating {len(svcs):,} Services and their EndpointSlices in it ...")
            took = k8s.populate(api, svcs)
            ctx.kubeconfig = api.kubeconfig
            res.setup.append(f"kube-apiserver + etcd (testkit.kubeapi) pinned to CPU "
                             f"{GENERATOR_CPU}, holding the same {len(svcs):,} Services and "
                             f"EndpointSlices (created in {took:.0f}s), for CoreDNS's kubernetes "
                             "plugin; idle during the load")
        except Exception as exc:  # report, do not fake
            ctx.kube_skip = f"the kube-apiserver fixture did not work: {str(exc).splitlines()[0]}"
            self._adopted.clear()
            api.stop()
            yield
            return
        try:
            yield
        finally:
            self._adopted.clear()
            api.stop()

    # one scenario

    def generators_for(self, sc: Scenario) -> list[Loadgen | Dnsperf]:
        """The generators that can drive ``sc``: loadgen has no TLS, so DoT is dnsperf's alone
        (whatever --generators says)."""
        if sc.transport == "dot":
            return [next((g for g in self.generators if isinstance(g, Dnsperf)), Dnsperf())]
        return self.generators

    def run_scenario(self, sc: Scenario) -> ScenarioResult:
        res = ScenarioResult(sc.id, sc.title, sc.transport)
        gen_cpus = (SERVER_CPU, GENERATOR_CPU) if sc.workers > 1 else (GENERATOR_CPU,)
        if sc.workers > 1:
            res.setup.append(
                f"cores: the two-core servers are pinned to CPUs {SERVER_CPU},{GENERATOR_CPU} and "
                f"the load generator runs on both CPUs too (there is no third core), so it takes "
                f"its share from the servers; the one-worker baseline is pinned to CPU {SERVER_CPU}"
                " with the same generator arrangement")
        else:
            res.setup.append(f"cores: server pinned to CPU {SERVER_CPU}, load generator to CPU "
                             f"{GENERATOR_CPU}")
        conns = self.s.tcp_conns if sc.transport in ("tcp", "dot") else (
            self.s.conns * 2 if sc.workers > 1 else self.s.conns)
        sockets = {"tcp": "TCP connections", "dot": "TLS connections"}.get(sc.transport, "UDP sockets")
        if sc.transport == "dot":
            res.setup.append("generator: dnsperf -m dot for the warm-up and both runs (loadgen "
                             "speaks no TLS), queries pipelined on each connection")
        res.setup.append(
            f"load: closed loop {conns} {sockets}"
            f" x {self.s.window} outstanding, {self.s.duration:g}s; open loop {self.s.rate:,.0f} "
            f"QPS offered, {self.s.duration:g}s; warm-up {self.s.warmup:g}s; timeout "
            f"{self.s.timeout:g}s; {len(sc.names):,} names cycled"
            + ("; loadgen ACKs every TCP read at once (--tcp-quickack)"
               if self.s.tcp_quickack and sc.transport == "tcp" else ""))
        wd = self.workdir / sc.id
        wd.mkdir(parents=True, exist_ok=True)
        qfile = sc.write_queries(wd / "queries.txt")
        with self.context(sc, res) as ctx:
            for server in servers_for(sc, self.s.servers):
                log(f"{sc.id}: {server.label} ...")
                r = self.run_server(sc, server, ctx, qfile, conns, gen_cpus)
                res.servers.append(r)
                if r.status != "ok":
                    first = r.reason.splitlines()[0] if r.reason else ""
                    log(f"{sc.id}: {server.label}: {r.status}: {first}")
        return res

    def _spec(self, sc: Scenario, port: int, qfile: Path, conns: int, cpus: tuple[int, ...],
              rate: float, duration: float) -> LoadSpec:
        return LoadSpec(port=port, query_file=qfile, transport=sc.transport, rate=rate,
                        duration=duration, conns=conns, window=self.s.window,
                        timeout=self.s.timeout, cpus=cpus,
                        quickack=self.s.tcp_quickack and sc.transport == "tcp")

    def run_server(self, sc: Scenario, server: Server, ctx: Context, qfile: Path, conns: int,
                   gen_cpus: tuple[int, ...]) -> ServerResult:
        res = ServerResult(server.name, server.label, server.workers, "skipped", cpus=server.cpus)
        generators = self.generators_for(sc)
        reason = server.unavailable() or server.skip_reason(sc, ctx) or _missing(generators)
        if reason:
            res.reason = reason
            return res
        res.version = server.version()
        wd = self.workdir / sc.id / re.sub(r"[^a-z0-9]+", "-", server.label.lower()).strip("-")
        wd.mkdir(parents=True, exist_ok=True)
        try:
            # VmHWM is the peak since the process began, so sampling from readiness on misses
            # nothing of a single process.
            with serving(sc, server, ctx, wd) as (proc, port, launch), PeakRss(proc) as rss:
                if launch.pin_children:
                    res.cpus = pin_workers(proc, server.workers, launch.cpus)
                res.answers_checked, bad = check_answers(sc, port, ctx.pki)
                if bad:
                    res.status, res.reason = "wrong-answers", "; ".join(bad[:3])
                    return res
                if ctx.pki is not None:
                    res.tls = dot.negotiated(ctx.pki, port)
                # loadgen warms up every scenario it can drive (its count bound is what S1-k8s and
                # S2 need); DoT's only generator is dnsperf.
                warmer = generators[0] if sc.transport == "dot" else self.loadgen
                self._warm_up(sc, warmer, port, qfile, conns, gen_cpus)
                for gen in generators:
                    res.runs.append(self._measure(sc, gen, proc, port, qfile, conns, gen_cpus))
                if not proc.running():
                    raise proc.fail("exited during the load")
            res.peak_rss_kib = rss.peak_kib
            res.status = "ok" if any(r.closed for r in res.runs) else "failed"
            if res.status == "failed":
                res.reason = "; ".join(r.error or "" for r in res.runs)
        except (StartFailed, RuntimeError, OSError) as exc:
            res.status, res.reason = "failed", str(exc)
        return res

    def _warm_up(self, sc: Scenario, gen: Loadgen | Dnsperf, port: int, qfile: Path, conns: int,
                 gen_cpus: tuple[int, ...]) -> None:
        """Closed-loop load before measuring, so that what is measured is the steady state:
        pages faulted in, caches filled (S2), answers a server builds lazily on first sight
        built (interkube's templates; S1-k8s has 10,000 names). When the names outnumber what
        the timed warm-up sends, it goes on to two passes over the list (at most 60 s, or a
        millisecond a name when that is longer)."""
        spec = self._spec(sc, port, qfile, conns, gen_cpus, 0.0, self.s.warmup)
        if sc.kind in ("cache", "k8s"):
            spec.duration = max(self.s.warmup, 60.0, len(sc.names) / 1000)
            spec.count = 2 * len(sc.names)
        gen.run(spec)

    def settle(self, ours: list[Proc | Adopted]) -> None:
        """Wait (up to ``settle`` seconds) until other work on the machine stops: another
        program's load would take CPU from the server or the generator and lower the figure.
        What was left is still measured and printed as 'other CPU'."""
        def note(other: float, done: bool) -> None:
            if done:
                log(f"  ... {'quiet' if other < self.s.settle_threshold else 'still busy'} "
                    f"(others use {100 * other:.0f}% of a core)")
            else:
                log(f"  other programs use {100 * other:.0f}% of a core; waiting up to "
                    f"{self.s.settle:.0f}s for the machine to be quiet ...")

        settle(ours, self.s.settle, self.s.settle_threshold, note)

    def _measure(self, sc: Scenario, gen: Loadgen | Dnsperf, proc: Proc, port: int, qfile: Path,
                 conns: int, gen_cpus: tuple[int, ...]) -> GenRuns:
        runs = GenRuns(gen.name)
        try:
            spec = self._spec(sc, port, qfile, conns, gen_cpus, 0.0, self.s.duration)
            up = self._upstream
            meters: list[Proc | Adopted] = [proc, *([up.proc] if up else []), *self._adopted]
            tries: list[float] = []
            attempts = max(1, self.s.repeat)
            i = 0
            while i < attempts:
                i += 1
                self.settle(meters)
                before = up.received() if up else 0
                with CpuMeter(meters) as cpu:
                    closed = gen.run(spec)
                tries.append(closed.qps)
                if runs.closed is None or closed.qps > runs.closed.qps:
                    # The best of the repeats: interference only ever lowers a figure.
                    runs.closed = closed
                    if up and closed.received:
                        runs.upstream_per_answer = (up.received() - before) / closed.received
                    runs.server_cpu_s = cpu.per_proc.get(proc.name, 0.0)
                    runs.noise_cpu_s = cpu.foreign(closed.cpu_s)
                if _noisy(runs.noise_cpu_s, runs.closed) and attempts < self.s.repeat + self.s.noisy_retries:
                    attempts += 1  # another try for a run that other programs disturbed
            assert runs.closed is not None
            runs.closed.detail["qps_of_repeats"] = tries
            # Open loop: latency is what interference spoils most; keep the quietest attempt.
            for _ in range(1 + self.s.noisy_retries):
                self.settle(meters)
                with CpuMeter(meters) as cpu:
                    opened = gen.run(self._spec(sc, port, qfile, conns, gen_cpus, self.s.rate,
                                                self.s.duration))
                noise = cpu.foreign(opened.cpu_s)
                if runs.open is None or noise < runs.open_noise_cpu_s:
                    runs.open, runs.open_noise_cpu_s = opened, noise
                if not _noisy(noise, opened):
                    break
        except Exception as exc:  # one generator failing must not hide the others
            runs.error = f"{type(exc).__name__}: {exc}"
        return runs


def _missing(generators: list[Loadgen | Dnsperf]) -> str | None:
    """Why a scenario's generators cannot run here, if they cannot."""
    for g in generators:
        try:
            if isinstance(g, Dnsperf):
                g.check()
        except GeneratorMissing as exc:
            return f"{exc}; loadgen speaks no TLS, so DoT needs it"
    return None


#: A run during which other programs used more than this share of one core is "noisy".
NOISY = 0.10


def _noisy(noise_cpu_s: float, r: LoadResult) -> bool:
    return r.duration > 0 and noise_cpu_s / r.duration > NOISY


def pin_workers(proc: Proc, workers: int, cpus: tuple[int, ...],
                timeout: float = 30.0) -> tuple[int, ...]:
    """Pin each worker process of a multi-process server to a core of its own (round-robin
    over ``cpus``, in PID order); the parent, which only supervises, keeps all of ``cpus``."""
    wait_until(lambda: len(_tree(proc.pid)) > workers, timeout, proc, f"{workers} worker processes")
    children = sorted(_tree(proc.pid)[1:])
    for i, pid in enumerate(children[:workers]):
        os.sched_setaffinity(pid, {cpus[i % len(cpus)]})
    return cpus


def _tree(pid: int) -> list[int]:
    from bench.procs import process_tree

    return process_tree(pid)


def make_workdir(keep: bool) -> tuple[Path, contextlib.AbstractContextManager[Any]]:
    """A temporary directory for configs, logs, the snapshot; removed unless ``keep``."""
    if keep:
        d = Path(tempfile.mkdtemp(prefix="interkube-bench-"))
        return d, contextlib.nullcontext()
    tmp = tempfile.TemporaryDirectory(prefix="interkube-bench-")
    return Path(tmp.name), tmp

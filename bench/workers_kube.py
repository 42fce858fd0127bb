"""Benchmark: cluster data in `interkube serve --workers N`: API load, memory, freshness, QPS.

Issue 7: "Multi-worker mode must keep every worker's cluster data current (each worker
watching, or one process sharing compiled tables): measure both, choose, and write down why."
This measures, one configuration after the other, against the same fake API:

* **each** -- ``--workers 1`` and ``--workers 2``: every worker loads the Corefile and runs its
  own list+watch of the cluster (what interkube does by default);
* **shared** -- ``--workers 2`` with ``INTERKUBE_SHARED_WATCH=1`` (interkube.kube.shared):
  worker 0 alone lists and watches, and forwards the stripped changes to the other workers,
  which apply them to their own index.

The fake API (``testkit.fakekube`` with watches, in a process of its own pinned to
CPU 1) holds 10,000 ClusterIP Services with an EndpointSlice each (the S1-k8s cluster of
bench/k8s.py) plus 20 headless Services. interkube serves ``cluster.local`` from it with a live
``kubernetes`` stanza (a kubeconfig). Cores: with one worker, the server is on CPU 0; with two,
worker i is pinned to CPU i, so worker 1 shares CPU 1 with the fake API and with this script
(the prober, the control client, the load generator's half): there are only two cores.

Figures, per configuration:

(a) API load, counted at the fake: list requests (pages of 500) and objects listed until every
    worker is synced, watch requests opened and watches open, and watch events delivered for
    the changes of (c) (per change: one per watching process that watches that resource).
(b) Memory after the first sync: VmRSS of each worker and of the whole server (parent and
    workers), and PSS, which splits pages the processes share (fork's copy-on-write pages)
    between them; the honest total is the PSS sum. Again after the QPS run.
(c) Freshness across workers: 64 UDP sockets, each with its own source port, so that the kernel
    (SO_REUSEPORT hashes the 4-tuple) spreads them over the workers. Which socket lands on which
    worker is found once, by stopping all workers but one (SIGSTOP by PID) and seeing which
    sockets still get answers. Then, 200 times: the changed name is asked from every socket
    (so each worker has its old answer cached, as under load), the change is made at the fake
    (alternately: a new Service is created; a headless Service's endpoint address is changed),
    and each worker is asked, through its own sockets in turn, until it answers the new data.
    The fake notes CLOCK_MONOTONIC just before it applies the change; "first" and "last" are
    the times until the first and the last worker answered the new data; "skew" is last minus
    first. After the last worker, every one of the 64 sockets is asked once more and must agree.
(d) QPS of kubernetes answers (A of the 10,000 Services), closed loop, with the harness's C
    load generator (bench/generators.py Loadgen) after a warm-up: on CPU 1 against one worker;
    on both CPUs against two workers (the generator takes its share of both cores, as in S5).
(e) With two workers, last: worker 0 is killed (SIGKILL, by PID) and a change is made at once;
    the time until all 64 sockets answer it. The kernel moves a dead worker's share of the
    sockets to the living one, and the parent starts worker 0 again (it binds after its sync).

Every process is started by bench.procs.Proc (pinned with taskset, PR_SET_PDEATHSIG) and
stopped by its PID; workers are checked gone by their PIDs afterwards. Every wait is bounded;
only 127.0.0.1 is used.

    python bench/workers_kube.py [--services 10000] [--changes 200] [--duration 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import select
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dns.message

from bench import k8s
from bench.generators import Loadgen, LoadResult, LoadSpec
from bench.procs import CpuMeter, Proc, process_tree, settle, status_kib, stop_all, wait_until
from testkit.servers import free_port

LOOPBACK = "127.0.0.1"
FAKE_CPU = 1
SOCKETS = 64
HEADLESS = 20                 # headless Services whose endpoint address the changes move
FRESH_NS = "bench-fresh"      # where the changes happen
#: One change must show in every worker within this long or it counts as lost.
CHANGE_DEADLINE = 5.0
SYNC_DEADLINE = 180.0
PROBE = "kubernetes.default.svc.cluster.local."
PROBE_ADDRESS = k8s.services(0)[0].cluster_ip

Obj = dict[str, Any]


# --- the fake API, in its own process ---------------------------------------------------------


def fake_objects(count: int) -> Iterator[Obj]:
    """Namespaces, ``count`` ClusterIP Services with one EndpointSlice each, and the headless
    Services the changes re-address."""
    from testkit.fakekube import endpoint_slice, service

    svcs = k8s.services(count)
    for ns in sorted({s.namespace for s in svcs} | {FRESH_NS}):
        yield {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
    for s in svcs:
        yield service(s.namespace, s.name, cluster_ips=[s.cluster_ip])
        if s.pod_ips:
            yield endpoint_slice(s.namespace, f"{s.name}-abcde", s.name,
                                 [{"ip": ip, "pod": f"{s.name}-{n}"} for n, ip in enumerate(s.pod_ips)])
    for j in range(HEADLESS):
        yield service(FRESH_NS, f"hl-{j}", headless=True)
        yield headless_slice(j, f"10.245.255.{j}")


def headless_slice(j: int, ip: str) -> Obj:
    from testkit.fakekube import endpoint_slice

    return endpoint_slice(FRESH_NS, f"hl-{j}-abcde", f"hl-{j}", [{"ip": ip, "pod": f"hl-{j}-0"}])


async def serve_fake(directory: Path, count: int) -> None:
    """Serve the fake API and a UDP control port until SIGTERM; announce both in fake.json."""
    import asyncio

    from testkit.fakekube import FakeKube, write_kubeconfig

    kube = FakeKube(watch=True)
    kube.add_all(fake_objects(count))
    # The watches start from the lists' version, so the log of the initial adds is never read:
    # dropping it halves the fake's memory.
    kube.compact()
    kube.events.clear()

    class Control(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: Any) -> None:
            msg = json.loads(data)
            reply: Obj = {"seq": msg.get("seq")}
            if msg["op"] == "add":
                reply["t0"] = time.monotonic()  # CLOCK_MONOTONIC: comparable across processes
                kube.add(msg["obj"])
            elif msg["op"] == "stats":
                reply.update(counters=dict(kube.counters), watchers=kube.watchers,
                             peak_watchers=kube.peak_watchers)
            self.transport.sendto(json.dumps(reply).encode(), addr)  # type: ignore[attr-defined]

    await kube.start()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Control, local_addr=(LOOPBACK, 0))
    write_kubeconfig(directory / "kubeconfig", {"bench": kube})
    part = directory / "fake.json.part"
    part.write_text(json.dumps({"control": transport.get_extra_info("sockname")[1], "url": kube.url}))
    part.replace(directory / "fake.json")  # renamed last: never read half-written
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    transport.close()
    await kube.close()


class FakeControl:
    """This side of the fake's control port: JSON datagrams, answered in order."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect((LOOPBACK, port))
        self.seq = 0

    def send(self, op: str, **kw: Any) -> int:
        self.seq += 1
        self.sock.send(json.dumps({"op": op, "seq": self.seq, **kw}).encode())
        return self.seq

    def reply(self, seq: int, timeout: float = 10.0) -> Obj:
        self.sock.settimeout(timeout)
        while True:
            msg: Obj = json.loads(self.sock.recv(65536))
            if msg.get("seq") == seq:
                return msg

    def call(self, op: str, **kw: Any) -> Obj:
        return self.reply(self.send(op, **kw))


# --- asking the workers -----------------------------------------------------------------------


class Prober:
    """UDP sockets with a source port each, connected to the server; the kernel sends each
    socket's queries to one worker (the SO_REUSEPORT group's hash of the 4-tuple)."""

    def __init__(self, port: int, count: int = SOCKETS) -> None:
        self.socks: list[socket.socket] = []
        while len(self.socks) < count:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((LOOPBACK, 0))
            if s.getsockname()[1] == port:
                # The server's port is taken from the ephemeral range too and is not bound
                # until a worker has synced: a probe socket holding it would lock it out.
                s.close()
                continue
            s.connect((LOOPBACK, port))
            s.setblocking(False)
            self.socks.append(s)
        self.ids = [random.randrange(0x10000) for _ in self.socks]
        self.by_fd = {s.fileno(): i for i, s in enumerate(self.socks)}
        self.poller = select.poll()
        for s in self.socks:
            self.poller.register(s, select.POLLIN)
        #: socket index -> worker index (see map_workers)
        self.worker_of: list[int] = [0] * count
        self._wires: dict[str, bytes] = {}

    def round(self, asks: list[tuple[int, str]], timeout: float = 1.0) -> dict[int, tuple[dns.message.Message, float]]:
        """Send each (socket, name) at once; the answers that came back in ``timeout``, with
        the monotonic time each was read."""
        want: dict[int, int] = {}
        for i, name in asks:
            self.ids[i] = (self.ids[i] + 1) & 0xFFFF
            wire = self._wires.get(name)
            if wire is None:
                wire = self._wires[name] = dns.message.make_query(name, "A").to_wire()
            with contextlib.suppress(OSError):  # refused: no worker bound yet
                self.socks[i].send(self.ids[i].to_bytes(2, "big") + wire[2:])
                want[i] = self.ids[i]
        got: dict[int, tuple[dns.message.Message, float]] = {}
        deadline = time.monotonic() + timeout
        while len(got) < len(want):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for fd, _ in self.poller.poll(left * 1000):
                i = self.by_fd[fd]
                while True:
                    try:
                        data = self.socks[i].recv(4096)
                    except (BlockingIOError, ConnectionRefusedError):
                        break
                    now = time.monotonic()
                    if len(data) >= 2 and int.from_bytes(data[:2], "big") == want.get(i):
                        got[i] = (dns.message.from_wire(data), now)
        return got

    def drain(self, quiet: float = 0.2) -> None:
        """Read and drop late answers until none comes for ``quiet`` seconds."""
        while self.poller.poll(quiet * 1000):
            for s in self.socks:
                with contextlib.suppress(OSError):
                    while s.recv(4096):
                        pass

    def close(self) -> None:
        for s in self.socks:
            s.close()


def address(msg: dns.message.Message) -> str | None:
    """The first A address of an answer; None for anything else (NXDOMAIN, SERVFAIL, NODATA)."""
    for rrset in msg.answer:
        for rr in rrset:
            if rr.rdtype == 1:
                return str(rr.address)
    return None


def reuseport_group(port: int) -> int:
    """How many UDP sockets are bound to 127.0.0.1:port (one per worker that has started)."""
    local = f"0100007F:{port:04X}"
    with open("/proc/net/udp") as f:
        return sum(1 for line in f if line.split()[1:2] == [local])


def map_workers(prober: Prober, pids: list[int]) -> list[int]:
    """Which worker answers each socket: stop every worker but one (SIGSTOP, by PID), ask from
    every socket, and see which sockets are still answered. Returns the sockets per worker."""
    if len(pids) == 1:
        prober.worker_of = [0] * len(prober.socks)
        return [len(prober.socks)]
    owner: dict[int, int] = {}
    try:
        for w, pid in enumerate(pids):
            others = [p for p in pids if p != pid]
            for p in others:
                os.kill(p, signal.SIGSTOP)
            got = prober.round([(i, PROBE) for i in range(len(prober.socks)) if i not in owner], timeout=0.5)
            for i in got:
                owner[i] = w
            for p in others:
                os.kill(p, signal.SIGCONT)
            prober.drain()
    finally:
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGCONT)
    if len(owner) != len(prober.socks):
        raise RuntimeError(f"{len(prober.socks) - len(owner)} sockets answered by no single worker")
    prober.worker_of = [owner[i] for i in range(len(prober.socks))]
    return [prober.worker_of.count(w) for w in range(len(pids))]


# --- readings ---------------------------------------------------------------------------------


def pss_kib(pid: int) -> int:
    """Proportional set size: resident pages, each shared page split among its sharers."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


@dataclass
class Memory:
    worker_rss_mib: list[float]
    worker_pss_mib: list[float]
    parent_rss_mib: float          # 0 with one worker (the server is the worker)
    total_rss_mib: float           # sum over every process (counts shared pages twice)
    total_pss_mib: float           # sum of PSS: what the server costs the machine


def memory(parent: int, workers: list[int]) -> Memory:
    mib = 1 / 1024
    procs = workers if workers == [parent] else [parent, *workers]
    return Memory([status_kib(p, "VmRSS") * mib for p in workers], [pss_kib(p) * mib for p in workers],
                  status_kib(parent, "VmRSS") * mib if workers != [parent] else 0.0,
                  sum(status_kib(p, "VmRSS") for p in procs) * mib, sum(pss_kib(p) for p in procs) * mib)


def pin_tree(pid: int, cpu: int) -> None:
    """Every thread of ``pid`` onto ``cpu`` (sched_setaffinity of a PID moves one thread)."""
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(task), {cpu})


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_times() -> dict[str, tuple[float, float]]:
    """Per CPU ("cpu0", "cpu1"): (busy seconds, of which softirq) since boot, from /proc/stat.
    Loopback packets are delivered in softirq, which is charged to no process."""
    out: dict[str, tuple[float, float]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *vals = line.split()
        if name.startswith("cpu") and name != "cpu":
            v = [int(x) for x in vals[:8]]
            out[name] = ((sum(v) - v[3] - v[4]) / _CLK_TCK, v[6] / _CLK_TCK)
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# --- one configuration ------------------------------------------------------------------------


@dataclass
class Config:
    label: str
    workers: int
    env: dict[str, str] = field(default_factory=dict)
    #: None: --services; 0 with ``full`` False is the baseline (a worker with no cluster data)
    services: int | None = None
    full: bool = True


@dataclass
class Result:
    label: str
    workers: int
    cpus: str
    sync_s: list[float] = field(default_factory=list)   # one per round
    sockets_per_worker: list[int] = field(default_factory=list)
    api_after_sync: Obj = field(default_factory=dict)
    api_after_changes: Obj = field(default_factory=dict)
    memory_after_sync: Memory | None = None
    memory_after_load: Memory | None = None
    first_ms: list[float] = field(default_factory=list)
    last_ms: list[float] = field(default_factory=list)
    skew_ms: list[float] = field(default_factory=list)
    first_worker: list[int] = field(default_factory=list)   # which worker showed each change first
    lost: int = 0
    disagreed: int = 0
    failover_ms: list[float] = field(default_factory=list)   # (e), one per round
    load: Obj = field(default_factory=dict)    # the best closed-loop run (of --repeat per round)
    server_cpu: float = 0.0                    # during that run, in cores
    other_cpu: float = 0.0                     # CPU of everything else on the machine then, in cores
    cpu_busy: dict[str, float] = field(default_factory=dict)     # share of each CPU busy then
    softirq: float = 0.0                       # in cores, all CPUs (packet delivery)
    rounds: int = 1

    def merge(self, other: Result) -> None:
        """Pool another round of the same configuration into this one."""
        self.sync_s += other.sync_s
        self.first_ms += other.first_ms
        self.last_ms += other.last_ms
        self.skew_ms += other.skew_ms
        self.first_worker += other.first_worker
        self.failover_ms += other.failover_ms
        self.lost += other.lost
        self.disagreed += other.disagreed
        self.rounds += other.rounds
        if other.load.get("qps", 0) > self.load.get("qps", 0):
            self.load, self.server_cpu, self.other_cpu = other.load, other.server_cpu, other.other_cpu
            self.cpu_busy, self.softirq = other.cpu_busy, other.softirq


def change(k: int, tag: str) -> tuple[Obj, str, str]:
    """The k-th change: (object to add at the API, name to ask, the address it must answer)."""
    from testkit.fakekube import service

    if k % 2 == 0:  # a new Service
        ip = f"10.97.{k >> 8 & 255}.{k & 255}"
        name = f"fresh-{tag}-{k}"
        return service(FRESH_NS, name, cluster_ips=[ip]), f"{name}.{FRESH_NS}.svc.cluster.local.", ip
    j = (k // 2) % HEADLESS  # an endpoint address moved
    ip = f"10.245.{k >> 8 & 255}.{k & 255}"
    return headless_slice(j, ip), f"hl-{j}.{FRESH_NS}.svc.cluster.local.", ip


def run_config(cfg: Config, opts: argparse.Namespace, wd: Path, gen: Loadgen) -> Result:
    cwd = wd / f"{cfg.label}-{cfg.workers}"
    cwd.mkdir(parents=True, exist_ok=True)
    services = opts.services if cfg.services is None else cfg.services
    fake = Proc("fakekube", [sys.executable, __file__, "--serve-fake", str(cwd), "--services", str(services)],
                cwd / "fake.log", cpus=(FAKE_CPU,)).start()
    server: Proc | None = None
    worker_pids: list[int] = []
    prober: Prober | None = None
    try:
        wait_until(lambda: (cwd / "fake.json").exists(), 120, fake, "started (fake.json written)")
        control = FakeControl(json.loads((cwd / "fake.json").read_text())["control"])
        port = free_port()
        corefile = cwd / "Corefile"
        corefile.write_text(f"cluster.local:{port} {{\n    bind {LOOPBACK}\n    kubernetes cluster.local {{\n"
                            f"        kubeconfig {cwd / 'kubeconfig'} bench\n        startup_timeout 120s\n"
                            f"    }}\n}}\n")
        cpus = (0,) if cfg.workers == 1 else (0, 1)
        res = Result(cfg.label, cfg.workers, ",".join(map(str, cpus)))
        settle([fake])  # the fake has filled its store; wait for anything else to go quiet
        t_start = time.monotonic()
        server = Proc("interkube", [sys.executable, "-m", "interkube", "serve", "-conf", str(corefile),
                                    "--workers", str(cfg.workers)],
                      cwd / "interkube.log", cpus=cpus, env={**os.environ, **cfg.env}).start()
        prober = Prober(port)
        # Ready: every worker bound (a worker binds only after its first sync) and every
        # socket answered with the right address.
        while True:
            if not server.running():
                raise server.fail("exited")
            if time.monotonic() - t_start > SYNC_DEADLINE:
                raise server.fail(f"not synced in {SYNC_DEADLINE:g}s")
            if not worker_pids and (cfg.workers == 1 or len(process_tree(server.pid)) > cfg.workers):
                # Workers are forked in index order, so PID order is worker order.
                worker_pids = [server.pid] if cfg.workers == 1 else sorted(process_tree(server.pid)[1:])
                for w, pid in enumerate(worker_pids):
                    pin_tree(pid, cpus[w % len(cpus)])
            if reuseport_group(port) == cfg.workers:
                got = prober.round([(i, PROBE) for i in range(SOCKETS)], timeout=0.5)
                if len(got) == SOCKETS and all(address(m) == PROBE_ADDRESS for m, _ in got.values()):
                    break
            time.sleep(0.05)
        res.sync_s = [time.monotonic() - t_start]
        time.sleep(1.0)  # let the lists' garbage go (malloc_trim runs after each list)
        res.api_after_sync = control.call("stats")
        res.memory_after_sync = memory(server.pid, worker_pids)
        if not cfg.full:
            return res
        res.sockets_per_worker = map_workers(prober, worker_pids)
        events_before = res.api_after_sync["counters"].get("watch_events", 0)
        tag = f"{cfg.workers}{cfg.label[0]}"
        for k in range(opts.changes):
            measure_change(k, tag, cfg.workers, prober, control, res)
        res.api_after_changes = control.call("stats")
        res.api_after_changes["events_per_change"] = (
            res.api_after_changes["counters"].get("watch_events", 0) - events_before) / max(opts.changes, 1)
        # (d) QPS of the 10,000 Services' A records.
        names = cwd / "names.txt"
        names.write_text("".join(f"{s.fqdn} A\n" for s in k8s.services(opts.services)[2:]))
        gen_cpus = (1,) if cfg.workers == 1 else (0, 1)
        conns = opts.conns * (1 if cfg.workers == 1 else 2)  # as S5: twice the sockets for two workers

        def spec(duration: float) -> LoadSpec:
            return LoadSpec(port=port, query_file=names, duration=duration, conns=conns, window=opts.window,
                            cpus=gen_cpus, timeout=1.0)

        gen.run(spec(opts.warmup))  # builds every answer once: the steady state is from templates
        for _ in range(opts.repeat):  # the best run: the machine may be shared with other work
            settle([server, fake])
            before = cpu_times()
            with CpuMeter([server, fake]) as meter:
                load: LoadResult = gen.run(spec(opts.duration))
            after = cpu_times()
            if load.qps > res.load.get("qps", 0):
                res.load = load.to_json()
                res.server_cpu = meter.per_proc.get("interkube", 0.0) / meter.wall
                res.softirq = sum(after[c][1] - before[c][1] for c in after) / meter.wall
                # Other programs (or the hypervisor's steal): busy time that is neither ours,
                # the generator's, nor packet delivery.
                res.other_cpu = max(0.0, meter.foreign(load.cpu_s) / meter.wall - res.softirq)
                res.cpu_busy = {c: (after[c][0] - before[c][0]) / meter.wall for c in after}
        res.memory_after_load = memory(server.pid, worker_pids)
        if cfg.workers > 1:
            measure_failover(worker_pids[0], tag, prober, control, res)
        return res
    finally:
        if prober is not None:
            prober.close()
        if server is not None:
            worker_pids += process_tree(server.pid)[1:] if server.running() else []
            server.stop(timeout=15)
        for pid in worker_pids:  # the parent reaps its workers; make sure none outlived it
            if Path(f"/proc/{pid}").exists() and pid != getattr(server, "pid", None):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        fake.stop()


def measure_change(k: int, tag: str, workers: int, prober: Prober, control: FakeControl, res: Result) -> None:
    obj, name, expect = change(k, tag)
    everyone = [(i, name) for i in range(SOCKETS)]
    prober.round(everyone)  # the old answer cached in every worker, as under load
    per_worker = [[i for i, w in enumerate(prober.worker_of) if w == n] for n in range(workers)]
    turn = [0] * workers
    seq = control.send("add", obj=obj)
    seen: dict[int, float] = {}
    deadline = time.monotonic() + CHANGE_DEADLINE
    while len(seen) < workers and time.monotonic() < deadline:
        asks = []
        for w in range(workers):
            if w not in seen:
                socks = per_worker[w]
                asks.append((socks[turn[w] % len(socks)], name))
                turn[w] += 1
        for i, (msg, at) in prober.round(asks).items():
            if address(msg) == expect:
                seen.setdefault(prober.worker_of[i], at)
    t0 = float(control.reply(seq)["t0"])
    if len(seen) < workers:
        res.lost += 1
        return
    confirm = prober.round(everyone)
    res.disagreed += sum(1 for m, _ in confirm.values() if address(m) != expect) + SOCKETS - len(confirm)
    first, last = min(seen.values()) - t0, max(seen.values()) - t0
    res.first_ms.append(first * 1000)
    res.last_ms.append(last * 1000)
    res.skew_ms.append((last - first) * 1000)
    res.first_worker.append(min(seen, key=seen.__getitem__))


def measure_failover(victim: int, tag: str, prober: Prober, control: FakeControl, res: Result) -> None:
    """(e): kill worker 0, change the data at once, time until every socket answers it."""
    from testkit.fakekube import service

    name, ip = f"failover-{tag}", "10.98.0.1"
    os.kill(victim, signal.SIGKILL)
    seq = control.send("add", obj=service(FRESH_NS, name, cluster_ips=[ip]))
    fqdn = f"{name}.{FRESH_NS}.svc.cluster.local."
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = prober.round([(i, fqdn) for i in range(SOCKETS)], timeout=0.05)  # a dead socket eats a round
        if len(got) == SOCKETS and all(address(m) == ip for m, _ in got.values()):
            res.failover_ms.append((max(at for _, at in got.values()) - float(control.reply(seq)["t0"])) * 1000)
            return
        time.sleep(0.005)
    control.reply(seq)


# --- report -----------------------------------------------------------------------------------


def report(results: list[Result], baselines: dict[str, Result], opts: argparse.Namespace) -> None:
    print(f"\ncluster data in `interkube serve --workers N`: {opts.services:,} Services + EndpointSlices "
          f"at a fake API (own process, CPU {FAKE_CPU}); {opts.changes} changes x {opts.rounds} round(s); "
          f"{SOCKETS} probe sockets; QPS: best of {opts.repeat * opts.rounds} {opts.duration:g} s closed-loop runs")
    print("cores: 1 worker on CPU 0; 2 workers on CPUs 0 and 1, one each, worker 1 sharing CPU 1 with the "
          "fake API and the prober; load generator (loadgen) on CPU 1 vs 1 worker, on CPUs 0,1 vs 2\n")
    cols = [f"{r.label} N={r.workers}" for r in results]
    width = max(22, *(len(c) + 2 for c in cols))
    rows: list[tuple[str, list[str]]] = []

    def row(title: str, cell: Any) -> None:
        rows.append((title, [cell(r) for r in results]))

    def api(r: Result, key: str) -> int:
        return int(r.api_after_sync["counters"].get(key, 0))

    def mem(m: Memory | None, what: str) -> str:
        if m is None:
            return "-"
        if what == "workers":
            return " / ".join(f"{v:.0f}" for v in m.worker_rss_mib)
        if what == "workers_pss":
            return " / ".join(f"{v:.0f}" for v in m.worker_pss_mib)
        return f"{getattr(m, what):.0f}"

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} / {pct(values, 0.99):.2f}" if values else "-"

    row("first sync, all workers", lambda r: f"{statistics.median(r.sync_s):.1f} s")
    row("API list requests", lambda r: f"{api(r, 'list')}")
    row("API objects listed", lambda r: f"{api(r, 'list_items'):,}")
    row("API MiB listed", lambda r: f"{api(r, 'list_bytes') / 2**20:.1f}")
    row("API watches opened/open", lambda r: f"{api(r, 'watch')} / {r.api_after_sync['watchers']}")
    row("API events per change", lambda r: f"{r.api_after_changes.get('events_per_change', 0):.2f}")
    row("RSS per worker MiB", lambda r: mem(r.memory_after_sync, "workers"))
    row("PSS per worker MiB", lambda r: mem(r.memory_after_sync, "workers_pss"))
    def data(r: Result) -> str:
        empty = baselines.get(f"{r.label}{r.workers}")
        if empty is None or empty.memory_after_sync is None or r.memory_after_sync is None:
            return "-"
        return " / ".join(f"{v - e:.0f}" for v, e in zip(r.memory_after_sync.worker_rss_mib,
                                                          empty.memory_after_sync.worker_rss_mib, strict=True))

    if baselines:
        row("RSS empty cluster MiB", lambda r: mem(baselines[f"{r.label}{r.workers}"].memory_after_sync, "workers")
            if f"{r.label}{r.workers}" in baselines else "-")
        row("data per worker MiB", data)
    row("RSS parent MiB", lambda r: mem(r.memory_after_sync, "parent_rss_mib"))
    row("RSS whole server MiB", lambda r: mem(r.memory_after_sync, "total_rss_mib"))
    row("PSS whole server MiB", lambda r: mem(r.memory_after_sync, "total_pss_mib"))
    row("PSS server after load", lambda r: mem(r.memory_after_load, "total_pss_mib"))
    row("sockets per worker", lambda r: " / ".join(map(str, r.sockets_per_worker)))
    row("first worker p50/p99 ms", lambda r: ms(r.first_ms))
    row("last worker p50/p99 ms", lambda r: ms(r.last_ms))
    row("skew p50/p99 ms", lambda r: ms(r.skew_ms))
    row("worker 0 first, %", lambda r: f"{100 * r.first_worker.count(0) / len(r.first_worker):.0f}"
        if r.first_worker and r.workers > 1 else "-")
    row("changes lost/disagreed", lambda r: f"{r.lost} / {r.disagreed}")
    row("worker 0 killed: all ms", lambda r: " / ".join(f"{v:,.0f}" for v in r.failover_ms) or "-")
    row("QPS (loadgen)", lambda r: f"{r.load.get('qps', 0):,.0f}")
    row("server CPU, % of a core", lambda r: f"{100 * r.server_cpu:.0f}")
    row("CPU 0 / CPU 1 busy, %", lambda r: " / ".join(f"{100 * r.cpu_busy.get(c, 0):.0f}" for c in ("cpu0", "cpu1")))
    row("softirq (packets), %", lambda r: f"{100 * r.softirq:.0f}")
    row("generator CPU, %", lambda r: f"{100 * r.load.get('cpu_s', 0) / max(r.load.get('duration', 1), 1e-9):.0f}")
    row("other programs, %", lambda r: f"{100 * r.other_cpu:.0f}")
    if baselines:
        print("data per worker: each worker's RSS after sync minus the same worker's with an empty cluster\n")
    print(" " * 26 + "".join(c.rjust(width) for c in cols))
    for title, cells in rows:
        print(title.ljust(26) + "".join(c.rjust(width) for c in cells))
    base = next((r for r in results if r.workers == 1), None)
    for r in results:
        if base is not None and r is not base and base.load.get("qps"):
            print(f"\n{r.label} N={r.workers}: QPS {r.load['qps'] / base.load['qps']:.2f}x one worker")


def shared_watch_available() -> bool:
    try:
        from interkube.server.workers import SHARED_WATCH_ENV  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=10_000, help="Services at the fake API (default 10000)")
    ap.add_argument("--changes", type=int, default=200, help="changes timed per configuration (default 200)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds of the QPS run (default 5)")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of load before it (default 2)")
    ap.add_argument("--configs", default="each1,each2,shared2",
                    help="which of each1, each2, shared2 to run (default all)")
    ap.add_argument("--conns", type=int, default=8, help="loadgen UDP sockets per worker (default 8)")
    ap.add_argument("--window", type=int, default=32, help="loadgen queries outstanding per socket (default 32)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run every configuration this many times, interleaved; changes are pooled (default 1)")
    ap.add_argument("--repeat", type=int, default=2, help="closed-loop runs per round, the best kept (default 2)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the empty-cluster memory baseline")
    ap.add_argument("--json", metavar="FILE", help="write every figure here")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (configs, logs)")
    ap.add_argument("--serve-fake", metavar="DIR", help=argparse.SUPPRESS)
    opts = ap.parse_args(argv)
    if opts.serve_fake:
        import asyncio

        asyncio.run(serve_fake(Path(opts.serve_fake), opts.services))
        return 0
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("bench/workers_kube.py needs two CPUs")
    os.sched_setaffinity(0, {FAKE_CPU})  # the prober and control client: the generator's core
    chosen = opts.configs.split(",")
    configs = [c for key, c in (("each1", Config("each", 1)), ("each2", Config("each", 2)),
                                ("shared2", Config("shared", 2, {"INTERKUBE_SHARED_WATCH": "1"})))
               if key in chosen]
    if any(c.env for c in configs) and not shared_watch_available():
        print("this interkube has no shared watch (interkube.kube.shared): that configuration is skipped")
        configs = [c for c in configs if not c.env]
    wd = Path(tempfile.mkdtemp(prefix="interkube-workers-kube-"))
    gen = Loadgen()
    gen.binary()
    results: dict[str, Result] = {}
    baselines: dict[str, Result] = {}
    try:
        if not opts.no_baseline:
            for cfg in configs:
                print(f"baseline: {cfg.label} N={cfg.workers} with an empty cluster ...", flush=True)
                baselines[f"{cfg.label}{cfg.workers}"] = run_config(
                    Config(cfg.label, cfg.workers, cfg.env, services=0, full=False), opts, wd / "empty", gen)
        for n in range(opts.rounds):
            for cfg in configs:
                print(f"round {n + 1}/{opts.rounds}: {cfg.label} N={cfg.workers} ...", flush=True)
                res = run_config(cfg, opts, wd / f"round-{n}", gen)
                key = f"{cfg.label}{cfg.workers}"
                if key in results:
                    results[key].merge(res)
                else:
                    results[key] = res
    finally:
        stop_all()
        if not opts.keep:
            import shutil

            shutil.rmtree(wd, ignore_errors=True)
        else:
            print(f"work directory kept: {wd}")
    report(list(results.values()), baselines, opts)
    if opts.json:
        doc = {"argv": sys.argv, "baselines": {k: asdict(v) for k, v in baselines.items()},
               "results": [asdict(r) for r in results.values()]}
        Path(opts.json).write_text(json.dumps(doc, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

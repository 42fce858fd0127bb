"""Issue 18, goal 4: a hosts/forward-only server's footprint, next to unbound's and CoreDNS's.

Each server is started ``--starts`` times with the same job (100 hosts records in example.org,
everything else forwarded to loadgen's responder on loopback) and measured:

* time to the first answer: from the spawn of the process to the first answer to a query sent
  to it every 5 ms (a hosts name: what a sidecar must answer at once), and the CPU the process
  used until then (what a busy machine does not inflate much; the scheduler's count in ns, where
  /proc/PID/stat has 10 ms ticks);
* RSS: VmRSS once it answers, and the peak (VmHWM) after 2,000 queries (half of them
  forwarded).

Goals (interkube): <= 25 MiB and <= 0.2 s to the first answer. Printed, never asserted; the
medians of the starts, and the machine's other work meanwhile (a busy machine slows every start).
Beside them, the floor any asyncio server on this Python starts from: the interpreter (with the
site packages' .pth files) and asyncio, with ssl (as asyncio imports it) and without (as
interkube imports it for a Corefile that uses no TLS: see interkube.server.openssl).

interkube runs on asyncio's event loop (``--loop asyncio``, as the sidecar's manifests run it):
uvloop, the default where it is installed, imports ssl itself, and OpenSSL's libraries are
4.9 MiB. ``--loop auto`` measures the default instead.

interkube runs as an installed package does, its bytecode compiled: this working tree runs with
PYTHONDONTWRITEBYTECODE=1 and is edited while benchmarks run, so stale .pyc files would have every
start compile those modules again, the compiler's CPU and peak memory counted as the server's.
The bytecode goes to a cache outside the tree (PYTHONPYCACHEPREFIX), filled by one start that is
not measured.

    python bench/footprint.py [--starts 5] [--servers interkube,unbound,coredns] [--loop asyncio]
                              [--baseline-src DIR]

The servers take turns, one start each per round, so that the machine's other work falls on
them alike. ``--baseline-src DIR`` adds ``interkube-baseline``: the ``src`` directory of another
version (``git archive <rev> src | tar -x -C /tmp/base``, with its C helper built in
/tmp/base/src/interkube), run through PYTHONPATH in the same rounds: a before/after pair of the
CPU to the first answer, the figure a busy machine inflates least.

Every process is stopped by its PID.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dns.message

from bench.generators import Loadgen
from bench.procs import GENERATOR_CPU, CpuMeter, Proc, proc_cpu_seconds, status_kib, stop_all
from bench.scenarios import HOSTS_ZONE, Scenario, hosts_records
from bench.servers import Context, Coredns, Interkube, Server, Unbound
from testkit.servers import free_port

GOAL_RSS_MIB = 25.0
GOAL_FIRST_ANSWER_S = 0.2
FORWARD_ZONE = "fwd.bench."


class HostsAndForward(Interkube):
    """interkube with `hosts` for the zone and a `forward` for the rest."""

    def corefile(self, sc: Scenario, ctx: Context, port: int, workdir: Path) -> str:
        hosts = workdir / "hosts"
        hosts.write_text("".join(f"{ip} {name}\n" for name, ip in sc.records))
        return (f".:{port} {{\n    bind 127.0.0.1\n    hosts {hosts} {HOSTS_ZONE} {{\n        ttl {sc.ttl}\n"
                f"    }}\n    forward {FORWARD_ZONE} 127.0.0.1:{ctx.upstream_port}\n}}\n")


def first_answer(port: int, wire: bytes, proc: Proc, timeout: float = 30.0) -> float:
    """Seconds from now (just after the spawn) until ``wire`` is answered on ``port``."""
    started = time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.005)
        while time.monotonic() - started < timeout:
            if not proc.running():
                raise proc.fail("exited before answering")
            s.sendto(wire, ("127.0.0.1", port))
            try:
                s.recv(4096)
                return time.monotonic() - started
            except OSError:
                continue
    raise proc.fail(f"no answer in {timeout:g}s")


def cpu_seconds(pid: int) -> float:
    """CPU time of process ``pid``'s threads so far, to the nanosecond (the scheduler's own count,
    /proc/PID/task/TID/schedstat): /proc/PID/stat's ticks are 10 ms each, a twentieth of the goal.
    The ticks where the scheduler's statistics are not kept."""
    try:
        return sum(int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
                   for tid in os.listdir(f"/proc/{pid}/task")) / 1e9
    except (OSError, ValueError, IndexError):
        return proc_cpu_seconds(pid)


def compiled_env(cache: Path) -> dict[str, str]:
    """The environment of a Python that finds its modules compiled (see the docstring): bytecode
    written to and read from ``cache``."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(cache)
    return env


def floor_mib(env: dict[str, str], ssl: bool = True) -> float:
    """VmRSS of this Python once it has imported asyncio: what any asyncio server starts from;
    without ``ssl``, asyncio imported as interkube imports it for a server without TLS."""
    hide = "" if ssl else "import sys; sys.modules['ssl'] = None; "
    code = hide + "import asyncio, re; print(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read())[1])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return int(out.stdout) / 1024


def floor_cpu(env: dict[str, str], site: bool = True, runs: int = 5) -> float:
    """CPU seconds (the scheduler's count) this Python takes to start and import asyncio, median
    of ``runs``; without ``site``, with ``-S``: no site-packages and none of their .pth files,
    which a machine may add to every start (a sandbox's certificate hook, coverage)."""
    code = "import asyncio; print(open('/proc/self/schedstat').read().split()[0])"
    argv = [sys.executable, *([] if site else ["-S"]), "-c", code]
    return statistics.median(
        int(subprocess.run(argv, capture_output=True, text=True, check=True, env=env).stdout) / 1e9
        for _ in range(runs))


def ask(port: int, names: list[str], count: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1.0)
        for i in range(count):
            s.sendto(dns.message.make_query(names[i % len(names)], "A").to_wire(), ("127.0.0.1", port))
            try:
                s.recv(4096)
            except OSError:
                pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--starts", type=int, default=5, help="starts of each server (medians are reported)")
    ap.add_argument("--servers", default="interkube,unbound,coredns")
    ap.add_argument("--loop", choices=("asyncio", "uvloop", "auto"), default="asyncio", help="interkube's --loop")
    ap.add_argument("--baseline-src", type=Path, help="the src/ directory of another interkube, measured too as "
                    "interkube-baseline (a before/after pair in the same rounds)")
    opts = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="interkube-footprint-"))
    records = hosts_records()
    # S1-hosts' data; the forwarding zone is the scenarios' (loadgen's responder answers it).
    sc = Scenario("footprint", "hosts and forward", "cache", FORWARD_ZONE, records=records, ttl=3600)
    gen = Loadgen()
    ctx = Context(upstream_port=free_port(), loop=opts.loop)
    probe = dns.message.make_query(records[0][0], "A").to_wire()
    names = [n for n, _ in records[:50]] + [f"n{i:04d}.{FORWARD_ZONE}" for i in range(50)]
    kinds: dict[str, Server] = {"interkube": HostsAndForward("interkube"), "unbound": Unbound("unbound"),
                                "coredns": Coredns("coredns")}
    labels = [s.strip() for s in opts.servers.split(",") if s.strip()]
    compiled = compiled_env(tmp / "pycache")
    # The environment of each interkube: the baseline's src/ first on the path (its bytecode in
    # the same cache: PYTHONPYCACHEPREFIX keeps each source file's by its own path).
    envs: dict[str, dict[str, str]] = {"interkube": compiled}
    if opts.baseline_src is not None:
        kinds["interkube-baseline"] = HostsAndForward("interkube")
        envs["interkube-baseline"] = {**compiled, "PYTHONPATH": str(opts.baseline_src.resolve())}
        labels.insert(labels.index("interkube") + 1 if "interkube" in labels else 0, "interkube-baseline")
    results: dict[str, tuple[list[float], list[float], list[float], list[float]]] = {}
    skipped: list[str] = []
    busy = 0.0
    wall = 0.0
    try:
        Proc("responder", gen.responder_argv(ctx.upstream_port, ttl=0), tmp / "responder.log",
             cpus=(GENERATOR_CPU,)).start()
        for label in list(labels):
            why = kinds[label].unavailable()
            if why:
                skipped.append(f"{label}: {why}")
                labels.remove(label)
            else:
                results[label] = ([], [], [], [])
        # Round by round, each server one start (interkube's first round compiles its bytecode,
        # unmeasured: see the docstring).
        for i in range(-1 if any(label in envs for label in labels) else 0, opts.starts):
            for label in labels:
                if i < 0 and label not in envs:
                    continue
                server = kinds[label]
                port = free_port()
                workdir = tmp / f"{label}-{i}"
                workdir.mkdir()
                launch = server.launch(_hosts_with_forward(sc, label), ctx, port, workdir)
                env = {**envs[label], **(launch.env or {})} if label in envs else launch.env
                with CpuMeter([]) as meter:
                    proc = Proc(label, launch.argv, workdir / "server.log", cpus=launch.cpus, env=env,
                                cwd=launch.cwd).start()
                    first = first_answer(port, probe, proc)
                    cpu = sum(cpu_seconds(pid) for pid in proc.tree())
                if i < 0:
                    proc.stop()
                    continue
                firsts, cpus, rss, peak = results[label]
                firsts.append(first)
                cpus.append(cpu)
                busy += meter.foreign(0.0)
                wall += meter.wall
                rss.append(sum(status_kib(pid, "VmRSS") for pid in proc.tree()) / 1024)
                ask(port, names, 2000)
                peak.append(sum(status_kib(pid, "VmHWM") for pid in proc.tree()) / 1024)
                proc.stop()
    finally:
        stop_all()
    print("a hosts/forward-only server: 100 hosts records, the rest forwarded (loadgen's responder on loopback;"
          " unbound and CoreDNS serve the hosts records only, as in S1-hosts);")
    print(f"median of {opts.starts} starts each")
    print(f"  {'server':<18} {'first answer s':>15} {'CPU s until':>12} {'RSS MiB':>9} {'peak MiB':>9}")
    for label, (firsts, cpus, rss, peak) in results.items():
        print(f"  {label:<18} {statistics.median(firsts):>15.3f} {statistics.median(cpus):>12.3f}"
              f" {statistics.median(rss):>9.1f} {statistics.median(peak):>9.1f}")
    if "interkube" in results and "interkube-baseline" in results:
        now, then = statistics.median(results["interkube"][1]), statistics.median(results["interkube-baseline"][1])
        print(f"  against the baseline ({opts.baseline_src}): CPU to the first answer {now:.3f} vs {then:.3f} s"
              f" ({now / then:.2f}x)")
    for line in skipped:
        print(f"  skipped {line}")
    print(f"  floor: Python {sys.version.split()[0]} with asyncio imported, doing nothing:"
          f" {floor_mib(compiled):.1f} MiB with ssl, {floor_mib(compiled, ssl=False):.1f} MiB without;"
          f" {floor_cpu(compiled):.3f} s of CPU to get there ({floor_cpu(compiled, site=False):.3f} s without"
          " site-packages' .pth files, -S): this machine's share of every start")
    print(f"  interkube ran with --loop {opts.loop}")
    if "interkube" in results:
        firsts, cpus, _, peak = results["interkube"]
        f, p = statistics.median(firsts), statistics.median(peak)
        print(f"  goal: interkube peak RSS <= {GOAL_RSS_MIB:g} MiB: {p:.1f} {'met' if p <= GOAL_RSS_MIB else 'short'}")
        print(f"  goal: interkube first answer <= {GOAL_FIRST_ANSWER_S:g} s: {f:.3f}"
              f" {'met' if f <= GOAL_FIRST_ANSWER_S else 'short'} (CPU until then {statistics.median(cpus):.3f} s)")
    share = busy / wall if wall else 0.0
    print(f"  other work on the machine during the starts: {100 * share:.0f}% of a core"
          + ("  (noisy: start times are the machine's; re-run on a quiet machine)" if share > 0.1 else ""))


def _hosts_with_forward(sc: Scenario, label: str) -> Scenario:
    """The scenario each server's own configuration takes: interkube reads ``records`` itself;
    unbound and CoreDNS get S1-hosts' zone data through their usual scenario kinds."""
    if label.startswith("interkube"):
        return sc
    return Scenario(sc.id, sc.title, "memory", HOSTS_ZONE, records=sc.records, ttl=sc.ttl)


if __name__ == "__main__":
    main()

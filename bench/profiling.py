"""``python -m bench --profile py-spy|pyinstrument``: where interkube's time per query goes.

interkube serves one S1-hosts run (answers from memory) and one S3 run (forwarding, cache
off), pinned to its core under closed-loop load from loadgen on the other core, while a
profiler watches it:

* py-spy (installed with pip when missing) samples the running process from outside, pinned
  to the generator's core, without stopping it (``--nonblocking``): a collapsed-stack file
  (``--format raw``) from one run and a flame graph (SVG) from a second identical run. Time
  spent in C (uvloop, the kernel's socket calls) is charged to the Python frame that called it.
* pyinstrument runs interkube inside its own interpreter (``python -m pyinstrument -m
  interkube serve ...``) and writes its text report when interkube exits on SIGTERM. It slows
  the server down a lot; its shares are still useful, its QPS is not.

For each run a summary file turns sample shares into microseconds per query: the server's CPU
time during the run divided by the answers it gave is the cost of one query, and each
function's share of the samples is its share of that cost.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench.generators import CACHE_DIR, Loadgen, LoadResult, LoadSpec
from bench.procs import GENERATOR_CPU, CpuMeter, Proc, started, wait_until
from bench.runner import Runner, ScenarioResult, Settings, _ready_probe, log
from bench.scenarios import Scenario, build
from bench.servers import Context, Interkube
from testkit.servers import free_port


def _ensure(tool: str) -> list[str]:
    """The command prefix that runs ``tool``; pip-installs it when missing."""
    if tool == "py-spy":
        exe = shutil.which("py-spy")
        if exe is None:
            log("py-spy not found; installing it with pip ...")
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True)
            exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        return [exe]
    if importlib.util.find_spec("pyinstrument") is None:
        log("pyinstrument not found; installing it with pip ...")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "pyinstrument"], check=True)
    return [sys.executable, "-m", "pyinstrument"]


def _summarise_collapsed(path: Path, us_per_query: float, top: int = 25) -> str:
    """Self and inclusive shares from py-spy's collapsed stacks, in µs per query: by function
    (all its lines together) and by line. Frames look like ``name (file:line)``."""
    self_line: Counter[str] = Counter()
    self_fn: Counter[str] = Counter()
    incl_fn: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        frames = stack.split(";")
        total += count
        self_line[frames[-1]] += count
        self_fn[_function(frames[-1])] += count
        for f in {_function(f) for f in frames}:
            incl_fn[f] += count
    if total == 0:
        return "no samples\n"

    def table(c: Counter[str], title: str) -> str:
        rows = [f"{title}\n{'share':>7} {'µs/query':>9}  frame"]
        for frame, n in c.most_common(top):
            rows.append(f"{100 * n / total:6.1f}% {us_per_query * n / total:9.2f}  {frame}")
        return "\n".join(rows) + "\n"

    return (f"{total} samples; µs/query = share x the server's CPU per query above\n\n"
            + table(self_fn, "Self time by function (the function itself was running)") + "\n"
            + table(self_line, "Self time by line") + "\n"
            + table(incl_fn, "Inclusive time by function (on the stack)"))


def _function(frame: str) -> str:
    """``name (file:line)`` -> ``name (file)``."""
    return re.sub(r":\d+\)$", ")", frame)


def _profile_one(tool: str, sc: Scenario, settings: Settings, loadgen: Loadgen, runner: Runner,
                 out_dir: Path, workdir: Path) -> list[Path]:
    prefix = _ensure(tool)
    res = ScenarioResult(sc.id, sc.title, sc.transport)
    written: list[Path] = []
    with runner.context(sc, res) as ctx:
        wd = workdir / f"profile-{sc.id}"
        wd.mkdir(parents=True, exist_ok=True)
        qfile = sc.write_queries(wd / "queries.txt")
        port = free_port()
        launch = Interkube("interkube").launch(sc, ctx, port, wd)
        argv = launch.argv
        stem = f"{sc.id}-{tool}"
        report_txt = out_dir / f"{stem}.txt"
        if tool == "pyinstrument":
            # python -m pyinstrument -r text -o FILE -m interkube serve ...
            argv = [*prefix, "-r", "text", "-o", str(report_txt), "-m",
                    *launch.argv[2:]]
        proc = Proc("interkube", argv, wd / "server.log", cpus=launch.cpus, cwd=launch.cwd)
        spec = LoadSpec(port=port, query_file=qfile, transport=sc.transport,
                        duration=settings.duration, conns=settings.conns,
                        window=settings.window, timeout=settings.timeout)
        header: list[str] = []
        with started(proc):
            wait_until(lambda: _ready_probe(sc, port), max(60.0, sc.k8s_services / 250), proc,
                       f"answering on {port}")
            # As the comparison warms up (S1-k8s and S2: until every name was asked twice).
            runner._warm_up(sc, loadgen, port, qfile, settings.conns, (GENERATOR_CPU,))
            if tool == "py-spy":
                for fmt, suffix in (("raw", "collapsed.txt"), ("flamegraph", "svg")):
                    dest = out_dir / f"{stem}.{suffix}"
                    result, cpu_s = _with_py_spy(prefix, proc, fmt, dest, spec, loadgen)
                    written.append(dest)
                    header.append(_cost_line(fmt, result, cpu_s))
                    if fmt == "raw":
                        us = 1e6 * cpu_s / result.received if result.received else 0.0
                        summary = out_dir / f"{stem}.summary.txt"
                        summary.write_text(
                            f"interkube {sc.id} under py-spy ({sc.title})\n{header[-1]}\n\n"
                            + _summarise_collapsed(dest, us))
                        written.append(summary)
            else:
                with CpuMeter([proc]) as meter:
                    result = loadgen.run(spec)
                header.append(_cost_line("pyinstrument", result, meter.per_proc.get("interkube", 0.0)))
        if tool == "pyinstrument":
            # Written by pyinstrument when interkube exited on the SIGTERM above.
            if report_txt.is_file():
                report_txt.write_text(f"interkube {sc.id} under pyinstrument ({sc.title})\n"
                                      + "\n".join(header) + "\n\n" + report_txt.read_text())
                written.append(report_txt)
            else:
                log(f"pyinstrument wrote no report; server log:\n{proc.log_tail()}")
        for line in header:
            log(f"{sc.id}: {line}")
    return written


def _with_py_spy(prefix: list[str], proc: Proc, fmt: str, dest: Path, spec: LoadSpec,
                 loadgen: Loadgen) -> tuple[LoadResult, float]:
    """One load run with py-spy attached for its length; returns the run and server CPU.

    ``--nonblocking``: py-spy reads the interpreter's memory without stopping it. The default
    (stopping the process for every sample, and --native, which needs that) cut interkube's
    throughput several times over here, which would profile a different server.
    """
    duration = int(spec.duration) + 1
    cmd = ["taskset", "-c", str(GENERATOR_CPU), *prefix, "record", "--pid", str(proc.pid),
           "--nonblocking", "--rate", "1000", "--duration", str(duration), "--format", fmt,
           "-o", str(dest)]
    spy = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(0.5)  # attached before the load starts
    with CpuMeter([proc]) as meter:
        result = loadgen.run(spec)
    try:
        out, _ = spy.communicate(timeout=duration + 30)
    except subprocess.TimeoutExpired:
        spy.kill()
        out, _ = spy.communicate()
    if spy.returncode != 0 or not dest.is_file():
        raise RuntimeError(f"py-spy failed ({spy.returncode}): {out.decode(errors='replace')[-500:]}")
    return result, meter.per_proc.get("interkube", 0.0)


def _cost_line(what: str, r: LoadResult, cpu_s: float) -> str:
    us = 1e6 * cpu_s / r.received if r.received else float("nan")
    return (f"[{what}] closed loop, generator {r.generator}: {r.qps:,.0f} QPS over {r.duration:.1f}s, "
            f"server CPU {cpu_s:.2f}s ({100 * cpu_s / r.duration:.0f}% of its core) -> "
            f"{us:.1f} µs of server CPU per query")


def run_profiles(tool: str, out: str | None, settings: Settings, loadgen: Loadgen,
                 workdir: Path, scenarios: list[Scenario] | None = None) -> int:
    """Profile interkube in each of ``scenarios`` (default: S1-hosts and S3)."""
    out_dir = Path(out) if out else CACHE_DIR / "profiles" / time.strftime("%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    # interkube alone: the comparison's peers (CoreDNS's API server) are not started.
    runner = Runner(dataclasses.replace(settings, servers=["interkube"]), [loadgen], loadgen, workdir)
    written: list[Path] = []
    for sc in scenarios if scenarios is not None else build(["S1-hosts", "S3"]):
        reason = Interkube("interkube").skip_reason(sc, Context())
        if reason:
            log(f"{sc.id}: skipped: {reason}")
            continue
        log(f"profiling interkube in {sc.id} with {tool} ...")
        written += _profile_one(tool, sc, settings, loadgen, runner, out_dir, workdir)
    log("profile files:\n  " + "\n  ".join(str(p) for p in written))
    return 0

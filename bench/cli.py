"""``python -m bench``: interkube against unbound, dnsmasq, knot-resolver and CoreDNS, one core each.

See bench/README.md for what is measured and how.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from bench import report
from bench.generators import GeneratorMissing, Loadgen, make_generators
from bench.k8s import DEFAULT_SERVICES
from bench.procs import stop_all
from bench.runner import Runner, Settings, log, make_workdir
from bench.scenarios import build
from bench.servers import ALL, Interkube

ALL_SCENARIOS = "S0,S1,S2,S3,S4,S5,S6"
QUICK = {"duration": 1.0, "warmup": 0.3, "settle": 0.0, "noisy_retries": 0}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenarios",
                   help="comma-separated: S0 (the generators' ceiling), S1 (= S1-hosts,S1-k8s), "
                        "S1-hosts, S1-k8s, S2, S3, S4, S5, S6 (DoT; always dnsperf) (default: all; "
                        "with --profile: S1-hosts,S3)")
    p.add_argument("--k8s-services", type=int, default=DEFAULT_SERVICES, metavar="N",
                   help=f"S1-k8s: Services in the cluster (default {DEFAULT_SERVICES:,}; above 65,280 "
                        "CoreDNS is skipped: its API server's service range holds no more)")
    p.add_argument("--servers", default=",".join(ALL),
                   help=f"comma-separated subset of {','.join(ALL)} (default: all)")
    p.add_argument("--generators", default="loadgen",
                   help="comma-separated: loadgen (our C generator), dnsperf (default: loadgen)")
    p.add_argument("--duration", type=float, default=5.0,
                   help="seconds per measured run, closed and open loop each (default 5)")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up load (default 1)")
    p.add_argument("--rate", type=float, default=10_000.0,
                   help="offered QPS of the open-loop (latency) run (default 10000)")
    p.add_argument("--conns", type=int, default=8, help="UDP sockets of the generator (default 8)")
    p.add_argument("--tcp-conns", type=int, default=4,
                   help="TCP connections in S4, TLS connections in S6 (default 4)")
    p.add_argument("--tcp-quickack", action="store_true",
                   help="S4, loadgen: acknowledge every read at once (TCP_QUICKACK) rather than "
                        "with the kernel's delayed ACK, as ordinary clients do")
    p.add_argument("--window", type=int, default=32,
                   help="closed loop: queries outstanding per socket/connection (default 32)")
    p.add_argument("--timeout", type=float, default=1.0, help="seconds before a query is lost")
    p.add_argument("--repeat", type=int, default=1,
                   help="closed-loop runs per server and generator; the best QPS is reported "
                        "(interference only lowers a figure) (default 1)")
    p.add_argument("--settle", type=float, default=30.0,
                   help="before each run, wait up to this many seconds for other programs on "
                        "the machine to go quiet (default 30; --quick: 0)")
    p.add_argument("--noisy-retries", type=int, default=2,
                   help="extra runs when other programs used more than 10%% of a core during a "
                        "run (default 2; --quick: 0)")
    p.add_argument("--quick", action="store_true",
                   help=f"short runs for a smoke test ({QUICK['duration']:g}s each, "
                        f"{QUICK['warmup']:g}s warm-up)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    p.add_argument("--loop", choices=("asyncio", "uvloop"),
                   help="interkube's event loop (passed as --loop; default: interkube's own)")
    p.add_argument("--profile", choices=("py-spy", "pyinstrument"),
                   help="instead of the comparison, profile interkube for one run of each scenario "
                        "(S1-hosts and S3 unless --scenarios names others) and write the output files")
    p.add_argument("--profile-dir", metavar="DIR",
                   help="where profiles go (default ~/.cache/interkube/bench/profiles/<time>)")
    p.add_argument("--keep", action="store_true",
                   help="keep the work directory (configs, logs, snapshot) and print its path")
    return p.parse_args(argv)


def machine() -> dict[str, Any]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cpus": os.cpu_count(), "kernel": platform.release(),
            "python": sys.version.split()[0]}


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def preflight() -> str | None:
    if shutil.which("taskset") is None:
        return "taskset is not installed (Debian package util-linux)"
    cpus = os.sched_getaffinity(0)
    if not {0, 1} <= cpus:
        return ("needs CPUs 0 and 1 (one for the server, one for the load); this process may "
                f"use {sorted(cpus)}")
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.quick:
        args.duration = min(args.duration, QUICK["duration"])
        args.warmup = min(args.warmup, QUICK["warmup"])
        args.settle = min(args.settle, QUICK["settle"])
        args.noisy_retries = min(args.noisy_retries, QUICK["noisy_retries"])
    problem = preflight()
    if problem:
        print(f"bench: cannot run: {problem}", file=sys.stderr)
        return 2
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = [s for s in servers if s not in ALL]
    if unknown:
        print(f"bench: unknown server(s) {', '.join(unknown)} (known: {', '.join(ALL)})",
              file=sys.stderr)
        return 2
    if args.k8s_services < 1:
        print("bench: --k8s-services must be at least 1", file=sys.stderr)
        return 2
    scenario_ids = (args.scenarios or ("S1-hosts,S3" if args.profile else ALL_SCENARIOS)).split(",")
    scenarios = build(scenario_ids, args.k8s_services)
    loadgen = Loadgen()
    try:
        log(f"loadgen: {loadgen.binary()}")
        generators = make_generators([g.strip() for g in args.generators.split(",") if g.strip()])
        for g in generators:
            if hasattr(g, "check"):
                g.check()
    except GeneratorMissing as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2

    settings = Settings(duration=args.duration, warmup=args.warmup, rate=args.rate,
                        timeout=args.timeout, conns=args.conns, window=args.window,
                        tcp_conns=args.tcp_conns, tcp_quickack=args.tcp_quickack,
                        servers=servers, loop=args.loop, keep=args.keep, repeat=args.repeat,
                        settle=args.settle, noisy_retries=args.noisy_retries)
    signal.signal(signal.SIGTERM, _on_term)
    workdir, cleanup = make_workdir(args.keep)
    given = argv if argv is not None else sys.argv[1:]
    command = "python -m bench " + " ".join(shlex.quote(a) for a in given)
    mach = machine()
    meta: dict[str, Any] = {
            "command": command, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": mach, "interkube": Interkube("interkube").version(),
            "settings": {k: v for k, v in vars(settings).items()},
            "generators": [g.name for g in generators], "loadgen_binary": str(loadgen.binary())}
    with cleanup:
        try:
            if args.profile:
                from bench.profiling import run_profiles

                return run_profiles(args.profile, args.profile_dir, settings, loadgen, workdir, scenarios)
            print(f"# {command}\n# {meta['started']}  {mach['cpu']}, "
                  f"{mach['cpus']} CPUs, Linux {mach['kernel']}\n"
                  f"# interkube {meta['interkube']}; generators: {', '.join(meta['generators'])}\n",
                  flush=True)
            runner = Runner(settings, generators, loadgen, workdir)
            results = []
            for sc in scenarios:
                res = runner.run_scenario(sc)
                results.append(res)
                print("\n" + report.scenario_table(res, settings.rate) + "\n", flush=True)
            gs = report.goals(scenarios, results)
            print(report.goals_text(gs, results), flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(report.to_json(meta, results, gs), indent=2))
                log(f"results written to {args.json}")
            if args.keep:
                log(f"work directory kept: {workdir}")
        except KeyboardInterrupt:
            print("bench: interrupted; stopping what was started", file=sys.stderr)
            return 130
        finally:
            stop_all()
    return 0

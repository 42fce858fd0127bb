"""Tables, goals and JSON from one run's results.

Every figure is printed beside the generator that produced it; ratios are always between
figures of the same run and the same generator.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from bench.runner import NOISY, GenRuns, ScenarioResult, ServerResult
from bench.scenarios import S5_GOAL, Scenario

#: The generator whose figures the goals are judged on (the lighter one), when it ran.
PRIMARY = "loadgen"


@dataclass
class GoalResult:
    scenario: str
    what: str             # "interkube ÷ dnsmasq" ...
    target: float
    got: float | None
    status: str           # met | short | n/a
    generator: str
    reason: str = ""
    notes: list[str] = field(default_factory=list)


def _fmt_int(v: float) -> str:
    return f"{v:,.0f}"


def _fmt_us(v: float) -> str:
    return "-" if v < 0 else (f"{v:,.0f}" if v >= 100 else f"{v:.1f}")


def _pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f}" if kib else "-"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if a > 0 and b > 0 else "-"


def _notes(runs: GenRuns, rate: float, workers_scenario: bool = False) -> str:
    out: list[str] = []
    c, o = runs.closed, runs.open
    if c and c.generator_bound and runs.server_cpu_s / c.duration < 0.9:
        # The server had CPU to spare while the generator was busy: its ceiling, not the server's.
        out.append(f"{c.generator} at {100 * c.cpu_s / c.duration:.0f}% CPU: QPS may be its ceiling")
    if o and (o.loss > 0.01 or (c and c.qps < rate)):
        out.append(f"overloaded at {rate:,.0f} QPS")
    if workers_scenario and c and runs.server_cpu_s > 0:
        out.append(f"{c.qps * c.duration / runs.server_cpu_s:,.0f} QPS per server core")
    if c and c.detail.get("reconnects"):
        out.append(f"{c.detail['reconnects']:,} reconnects")
    if runs.upstream_per_answer is not None:
        out.append(f"upstream queries/answer {runs.upstream_per_answer:.2f}")
    if (c and c.duration > 0 and runs.noise_cpu_s / c.duration > NOISY) or \
            (o and o.duration > 0 and runs.open_noise_cpu_s / o.duration > NOISY):
        out.append("noisy machine")
    if c and c.rcodes and set(c.rcodes) != {"NOERROR"}:
        out.append("rcodes " + ",".join(f"{k}:{v}" for k, v in sorted(c.rcodes.items())))
    if runs.error:
        out.append(runs.error)
    return "; ".join(out)


def _other(runs: GenRuns) -> str:
    """Other programs' CPU during the closed / open loop runs, in % of one core."""
    c, o = runs.closed, runs.open
    a = f"{100 * runs.noise_cpu_s / c.duration:.0f}" if c and c.duration else "-"
    b = f"{100 * runs.open_noise_cpu_s / o.duration:.0f}" if o and o.duration else "-"
    return f"{a}/{b}%"


def _baseline(res: ScenarioResult, s: ServerResult) -> ServerResult | None:
    """What a row is compared with: interkube for peers; the one-worker interkube in S5."""
    if s.key == "interkube" and s.workers == 1:
        return None
    if s.key == "interkube":
        return res.find("interkube", 1)
    return res.find("interkube", s.workers) or res.find("interkube", 1)


def scenario_table(res: ScenarioResult, rate: float) -> str:
    head = ["server", "gen", "QPS", "lost", "p50 µs", "p99 µs", "lost", "RSS MiB",
            "QPS ratio", "p99 ratio", "srv CPU", "other CPU", "notes"]
    rows: list[list[str]] = []
    skipped: list[str] = []
    for s in res.servers:
        if s.status != "ok":
            skipped.append(f"  {s.label}: {s.status}: {s.reason}")
            continue
        base = _baseline(res, s)
        for runs in s.runs:
            c, o = runs.closed, runs.open
            b = base.run(runs.generator) if base and base.status == "ok" else None
            if base is None:
                qr = pr = "-"
            elif s.key == "interkube":   # S5: two workers vs one
                qr = _ratio(c.qps, b.closed.qps) if c and b and b.closed else "-"
                pr = "-"
            else:  # interkube ÷ peer
                qr = _ratio(b.closed.qps, c.qps) if c and b and b.closed else "-"
                pr = _ratio(b.open.p99_us, o.p99_us) if o and b and b.open else "-"
            rows.append([
                s.label, runs.generator,
                _fmt_int(c.qps) if c else "-", _pct(c.loss) if c else "-",
                _fmt_us(o.p50_us) if o else "-", _fmt_us(o.p99_us) if o else "-",
                _pct(o.loss) if o else "-", _mib(s.peak_rss_kib), qr, pr,
                f"{100 * runs.server_cpu_s / c.duration:.0f}%" if c and c.duration else "-",
                _other(runs),
                _notes(runs, rate, any(x.workers > 1 for x in res.servers))])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    right = {2, 3, 4, 5, 6, 7, 8, 9, 10, 11}

    def line(cells: list[str]) -> str:
        return "  " + "  ".join(c.rjust(widths[i]) if i in right else c.ljust(widths[i])
                                for i, c in enumerate(cells)).rstrip()

    out = [f"== {res.id}: {res.title}"]
    out += [f"   {x}" for x in res.setup]
    out.append(f"   columns: QPS and the first 'lost' from the closed loop; p50/p99 and the second "
               f"'lost' from the open loop at {rate:,.0f} QPS offered; RSS = peak VmHWM of the "
               "server's processes; QPS ratio = interkube's ÷ the row's"
               + (" (S5: the row's ÷ one worker's)" if any(s.workers > 1 for s in res.servers) else "")
               + "; p99 ratio = interkube's ÷ the row's (below 1: interkube answers faster); "
               "other CPU = CPU used by anything else on the machine during the closed/open loop "
               "runs, in % of one core; srv CPU = the server's CPU then (100% = its core saturated)")
    out.append(line(head))
    out += [line(r) for r in rows]
    if skipped:
        out.append("  not measured:")
        out += skipped
    versions = "; ".join(f"{s.label} {s.version}" for s in res.servers if s.version)
    if versions:
        out.append(f"   versions: {versions}")
    tls = "; ".join(f"{s.label} {s.tls}" for s in res.servers if s.tls)
    if tls:
        out.append(f"   TLS negotiated with the answer check's client (Python's ssl: OpenSSL's "
                   f"default offer, as dnsperf's): {tls}")
    return "\n".join(out)


def goals(scenarios: list[Scenario], results: list[ScenarioResult]) -> list[GoalResult]:
    out: list[GoalResult] = []
    by_id = {r.id: r for r in results}
    for sc in scenarios:
        res = by_id.get(sc.id)
        if res is None:
            continue
        if sc.workers > 1:
            one, two = res.find("interkube", 1), res.find("interkube", sc.workers)
            g = _goal(sc.id, f"interkube {sc.workers} workers ÷ 1 worker", S5_GOAL, two, one)
            out.append(g)
            a = two.run(g.generator) if two else None
            b = one.run(g.generator) if one else None
            if g.got is not None and a and b and a.closed and b.closed and \
                    a.server_cpu_s > 0 and b.server_cpu_s > 0:
                cores = a.server_cpu_s / a.closed.duration
                per_core = (a.closed.qps / cores) / (b.closed.qps * b.closed.duration / b.server_cpu_s)
                g.notes.append(
                    f"the {sc.workers} workers got {cores:.2f} cores of CPU in all (the generator "
                    f"shares the two cores); per core of server CPU they answered {per_core:.2f}x "
                    "what one worker did")
            continue
        ik = res.find("interkube")
        for goal in sc.goals:
            out.append(_goal(sc.id, f"interkube ÷ {goal.peer}", goal.ratio, ik,
                             res.find(goal.peer)))
    return out


def _goal(sc_id: str, what: str, target: float, num: ServerResult | None,
          den: ServerResult | None) -> GoalResult:
    for s in (num, den):
        if s is None:
            return GoalResult(sc_id, what, target, None, "n/a", PRIMARY, "not selected")
        if s.status != "ok":
            return GoalResult(sc_id, what, target, None, "n/a", PRIMARY,
                              f"{s.label} {s.status}: {s.reason.splitlines()[0] if s.reason else ''}")
    assert num is not None and den is not None
    gen = PRIMARY if num.run(PRIMARY) and den.run(PRIMARY) else (num.runs[0].generator if num.runs else "?")
    a, b = num.run(gen), den.run(gen)
    if not (a and b and a.closed and b.closed and b.closed.qps > 0):
        return GoalResult(sc_id, what, target, None, "n/a", gen, "no closed-loop figure")
    got = a.closed.qps / b.closed.qps
    g = GoalResult(sc_id, what, target, got, "met" if got >= target else "short", gen)
    for s, r in ((num, a), (den, b)):
        assert r.closed is not None
        if r.closed.duration > 0 and r.noise_cpu_s / r.closed.duration > NOISY:
            g.notes.append(f"noisy: other programs used {100 * r.noise_cpu_s / r.closed.duration:.0f}% "
                           f"of a core during {s.label}'s run")
    return g


def goals_text(gs: list[GoalResult], results: list[ScenarioResult]) -> str:
    out = ["== Goals of issue 7 (closed-loop QPS ratios from this run; printed, never asserted)"]
    w = max((len(f"{g.scenario}  {g.what}") for g in gs), default=20)
    for g in gs:
        label = f"{g.scenario}  {g.what}".ljust(w)
        got = f"{g.got:.2f}x" if g.got is not None else "  -  "
        extra = ([g.reason] if g.reason else []) + g.notes
        tail = f"  ({'; '.join(extra)})" if extra else ""
        out.append(f"  {label}  >= {g.target:.1f}x  got {got:>7}  {g.status:<5} [{g.generator}]{tail}")
    out.append("  Peak RSS under load (MiB, VmHWM summed over the server's processes; "
               "interkube runs its default settings):")
    for r in results:
        cells = [f"{s.label} {_mib(s.peak_rss_kib)}" for s in r.servers if s.status == "ok"]
        if cells:
            out.append(f"    {r.id}: " + " | ".join(cells))
    tls_cost = dot_over_tcp(results)
    if tls_cost:
        out.append("  DoT ÷ TCP, closed-loop QPS of S6 ÷ S4 with dnsperf (the one generator both have): "
                   + " | ".join(f"{label} {ratio:.2f}x" for label, ratio in tls_cost))
    return "\n".join(out)


def dot_over_tcp(results: list[ScenarioResult]) -> list[tuple[str, float]]:
    """Per server measured in both S4 and S6 with dnsperf: what TLS costs it, as S6's closed-loop
    QPS ÷ S4's (S6 has no loadgen figure to compare with S4's)."""
    by_id = {r.id: r for r in results}
    s4, s6 = by_id.get("S4"), by_id.get("S6")
    out: list[tuple[str, float]] = []
    for s in s6.servers if s4 and s6 else []:
        assert s4 is not None
        tcp = s4.find(s.key, s.workers)
        a = s.run("dnsperf") if s.status == "ok" else None
        b = tcp.run("dnsperf") if tcp and tcp.status == "ok" else None
        if a and b and a.closed and b.closed and b.closed.qps > 0:
            out.append((s.label, a.closed.qps / b.closed.qps))
    return out


def to_json(meta: dict[str, Any], results: list[ScenarioResult], gs: list[GoalResult]) -> dict[str, Any]:
    return {"meta": meta, "scenarios": [r.to_json() for r in results],
            "goals": [asdict(g) for g in gs]}

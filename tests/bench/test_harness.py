"""Smoke test of the benchmark harness (bench/): structure of its output, never its figures.

The harness is run as users run it (``python -m bench`` from the repository root) in --quick
mode on one scenario against interkube and one peer. Timing belongs to the benchmark itself;
here only the shape of the table, the goals and the JSON are checked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # bench/ is a package at the repository root, not installed

from bench import k8s  # noqa: E402
from bench.generators import Dnsperf, LoadSpec  # noqa: E402
from bench.scenarios import build, responder_address  # noqa: E402


def _needs(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")
    if not {0, 1} <= os.sched_getaffinity(0):
        pytest.skip("the harness needs CPUs 0 and 1")


def test_quick_run_prints_a_table_and_goals_and_writes_json(tmp_path: Path) -> None:
    _needs("gcc", "taskset", "dnsmasq")
    out_json = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--scenarios", "S1-hosts",
         "--servers", "interkube,dnsmasq", "--duration", "0.5", "--json", str(out_json)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = done.stdout

    assert "== S1-hosts:" in text
    header = next(line for line in text.splitlines() if line.lstrip().startswith("server "))
    for column in ("gen", "QPS", "p50 µs", "p99 µs", "RSS MiB", "QPS ratio", "p99 ratio"):
        assert column in header
    rows = {line.split()[0]: line.split() for line in text.splitlines()
            if line.startswith("  ") and line.split()[:1] in (["interkube"], ["dnsmasq"])}
    assert set(rows) == {"interkube", "dnsmasq"}, text
    assert all(r[1] == "loadgen" for r in rows.values())  # every figure names its generator
    assert "== Goals of issue 7" in text
    goal_lines = [line for line in text.splitlines() if "interkube ÷ " in line and ">=" in line]
    assert len(goal_lines) == 4  # dnsmasq, kresd, unbound, coredns
    assert all(any(s in line for s in (" met ", " short ", " n/a ")) for line in goal_lines)
    assert any("interkube ÷ dnsmasq" in line and "n/a" not in line for line in goal_lines)

    data = json.loads(out_json.read_text())
    assert set(data) == {"meta", "scenarios", "goals"}
    assert data["meta"]["command"].startswith("python -m bench")
    (sc,) = data["scenarios"]
    assert sc["id"] == "S1-hosts" and sc["transport"] == "udp"
    servers = {s["key"]: s for s in sc["servers"]}
    assert set(servers) == {"interkube", "dnsmasq"}
    for s in servers.values():
        assert s["status"] == "ok", s["reason"]
        assert s["answers_checked"] > 0
        assert isinstance(s["peak_rss_kib"], int) and s["peak_rss_kib"] > 0
        (run,) = s["runs"]
        assert run["generator"] == "loadgen"
        for loop in ("closed", "open"):
            r = run[loop]
            assert r["generator"] == "loadgen" and r["loop"] == loop
            assert isinstance(r["qps"], float)
            assert r["sent"] >= r["received"] >= 0
            assert set(r) >= {"p50_us", "p99_us", "timeouts", "rcodes", "cpu_s"}
        assert run["open"]["offered_rate"] > 0 and run["closed"]["offered_rate"] == 0
    goals = {g["what"]: g for g in data["goals"]}
    assert goals["interkube ÷ dnsmasq"]["status"] in ("met", "short")
    assert goals["interkube ÷ coredns"]["status"] == "n/a"  # not selected


def test_snapshot_is_a_kubectl_style_list() -> None:
    svcs = k8s.services(count=6, per_namespace=3)
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        doc = yaml.safe_load(k8s.write_snapshot(Path(d) / "s.yaml", svcs).read_text())
    assert doc["kind"] == "List" and doc["apiVersion"] == "v1"
    kinds = [i["kind"] for i in doc["items"]]
    # kubectl prints one resource type after the other
    assert kinds == ["Service"] * len(svcs) + ["EndpointSlice"] * sum(1 for s in svcs if s.pod_ips)
    svc = next(i for i in doc["items"] if i["metadata"]["name"] == "svc-001")
    assert svc["spec"]["clusterIP"] == svcs[3].cluster_ip
    eps = [i for i in doc["items"] if i["kind"] == "EndpointSlice"
           and i["metadata"]["labels"]["kubernetes.io/service-name"] == "svc-001"
           and i["metadata"]["namespace"] == "bench-000"]
    assert len(eps) == 1 and eps[0]["endpoints"][0]["conditions"]["ready"] is True


def test_scenarios_expand_and_forwarding_answers_are_per_name() -> None:
    ids = [s.id for s in build(["S1", "S3"])]
    assert ids == ["S1-hosts", "S1-k8s", "S3"]
    a, b = responder_address("n0000.fwd.bench."), responder_address("n0001.fwd.bench.")
    assert a != b and a.startswith("198.1")
    assert responder_address("N0000.FWD.bench.") == a  # case-insensitive, as in loadgen.c


def test_the_k8s_cluster_takes_its_size_from_the_option() -> None:
    (sc,) = build(["S1-k8s"], k8s_services=50)
    assert sc.k8s_services == 50 and len(sc.records) == 52 and len(sc.names) == 50
    assert [s.cluster_ip for s in k8s.services(10)] == [s.cluster_ip for s in k8s.services(100_000)[:12]]
    big = k8s.services(100_000)  # beyond the API server's /16: addresses and pods stay distinct
    assert len({s.cluster_ip for s in big}) == len(big)
    assert len({ip for s in big for ip in s.pod_ips}) == 2 * (len(big) - 1)
    with pytest.raises(RuntimeError, match="outside the API server's service range"):
        k8s.populate(None, big[-2:])


def test_dnsperf_output_is_parsed() -> None:
    out = """\
> NOERROR www-000.example.org A 0.000050
> NOERROR www-001.example.org A 0.000070
> T www-002.example.org A
Statistics:

  Queries sent:         3
  Queries completed:    2 (66.67%)
  Queries lost:         1 (33.33%)

  Response codes:       NOERROR 2 (100.00%)
  Run time (s):         1.000000
  Queries per second:   2.000000

  Average Latency (s):  0.000060 (min 0.000050, max 0.000070)
"""
    spec = LoadSpec(port=53, query_file=Path("q"), rate=3)
    r = Dnsperf()._parse(out, spec, cpu=0.1)
    assert (r.generator, r.sent, r.received, r.timeouts) == ("dnsperf", 3, 2, 1)
    assert r.rcodes == {"NOERROR": 2}
    assert r.p50_us == pytest.approx(70.0) and r.loop == "open"


def test_quick_dot_run_uses_dnsperf_records_tls_and_skips_dnsmasq(tmp_path: Path) -> None:
    _needs("gcc", "taskset", "dnsperf")
    out_json = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--scenarios", "S6",
         "--servers", "interkube,dnsmasq", "--duration", "0.5", "--json", str(out_json)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = done.stdout
    assert "== S6:" in text and "dnsperf -m dot" in text
    assert "dnsmasq: skipped: dnsmasq has no DNS-over-TLS server" in text
    assert "TLS negotiated with the answer check's client" in text

    (sc,) = json.loads(out_json.read_text())["scenarios"]
    assert sc["id"] == "S6" and sc["transport"] == "dot"
    servers = {s["key"]: s for s in sc["servers"]}
    assert servers["dnsmasq"]["status"] == "skipped"
    ik = servers["interkube"]
    assert ik["status"] == "ok", ik["reason"]
    assert ik["answers_checked"] > 0 and ik["tls"].startswith("TLSv1.")
    (run,) = ik["runs"]  # loadgen (the default generator) speaks no TLS: dnsperf alone
    assert run["generator"] == "dnsperf"
    for loop in ("closed", "open"):
        r = run[loop]
        assert r["transport"] == "dot" and r["received"] > 0
        assert r["detail"]["conns"] == 4 and r["detail"]["reconnects"] >= 0


def test_dnsperf_connection_statistics_are_parsed() -> None:
    out = """\
Statistics:

  Queries sent:         10
  Queries completed:    10 (100.00%)
  Queries lost:         0 (0.00%)

  Response codes:       NOERROR 10 (100.00%)
  Run time (s):         1.000000
  Queries per second:   10.000000

  Average Latency (s):  0.000100 (min 0.000050, max 0.000200)
  Latency StdDev (s):   0.000010

Connection Statistics:

  Reconnections:        2

  Average Latency (s):  0.004000 (min 0.003000, max 0.005000)
  Latency StdDev (s):   0.000500
"""
    r = Dnsperf()._parse(out, LoadSpec(port=853, query_file=Path("q"), transport="dot", conns=4), cpu=0.1)
    assert r.mean_us == pytest.approx(100.0)  # the queries' latency, not the connections'
    assert r.detail["reconnects"] == 2
    assert r.detail["connect_latency_us"] == pytest.approx(4000.0)
    assert r.detail["conns"] == 4


def test_dot_over_tcp_compares_dnsperf_figures_of_s6_and_s4() -> None:
    from bench.generators import LoadResult
    from bench.report import dot_over_tcp, goals_text
    from bench.runner import GenRuns, ScenarioResult, ServerResult

    def server(key: str, transport: str, qps: dict[str, float], status: str = "ok") -> ServerResult:
        runs = [GenRuns(gen, closed=LoadResult(gen, transport, "closed", 0.0, 1.0, int(q), int(q), 0, q,
                                               10.0, 20.0, 12.0, {"NOERROR": int(q)}, 0.5))
                for gen, q in qps.items()]
        return ServerResult(key, key, 1, status, runs=runs)

    s4 = ScenarioResult("S4", "tcp", "tcp", servers=[
        server("interkube", "tcp", {"loadgen": 90_000.0, "dnsperf": 40_000.0}),
        server("unbound", "tcp", {"loadgen": 80_000.0, "dnsperf": 50_000.0}),
        server("kresd", "tcp", {"dnsperf": 30_000.0})])
    s6 = ScenarioResult("S6", "dot", "dot", servers=[
        server("interkube", "dot", {"dnsperf": 30_000.0}),
        server("unbound", "dot", {"dnsperf": 20_000.0}),
        server("kresd", "dot", {}, status="failed"),
        server("dnsmasq", "dot", {}, status="skipped")])
    # The loadgen figure of S4 is never the denominator; servers without both figures are left out.
    assert dot_over_tcp([s4, s6]) == [("interkube", 0.75), ("unbound", 0.4)]
    assert dot_over_tcp([s6]) == []
    assert "DoT ÷ TCP" in goals_text([], [s4, s6]) and "unbound 0.40x" in goals_text([], [s4, s6])

"""The DNS injection webhook's admission latency at 200 Pod creations/s, with a real kube-apiserver
in the loop (issue 14); goal: p99 <= 5 ms in the webhook (server-side).

Run ``python bench/webhook_latency.py`` from the repository root (kube-apiserver and etcd from
``scripts/build-peers``). Everything is on loopback:

* ``interkube webhook`` as a process pinned to CPU 0, alone;
* etcd and kube-apiserver (testkit.kubeapi) pinned to CPU 1, with this script, which creates the
  Pods: an open loop at ``--rate`` creations/s for ``--duration`` seconds per phase, each Pod a
  POST to the API server (admin client certificate, HTTP/1.1 keep-alive connections);
* the MutatingWebhookConfiguration is the one ``interkube render webhook`` writes, pointed at the
  process (``url: https://127.0.0.1:PORT/mutate``) and limited to the two namespaces used.

Two phases in the same run: the *baseline* creates Pods in a namespace the webhook does not
select (the API server's own cost), the *webhook* phase in one it does (every Pod checked to be
stored with dnsPolicy None). They alternate for ``--rounds`` rounds (baseline, webhook, webhook,
baseline, ...: a drift of the machine's load falls on both alike), each after waiting up to 30 s
for other programs to go quiet. Printed for each: end-to-end p50/p99 of the creation as the client
sees it; for the webhook phase also the webhook's own time per review (from its
``interkube_webhook_admission_duration_seconds`` histogram, read before and after: p50/p99
interpolated within the buckets, and the share of reviews at or under 5 ms, which decides the
goal exactly: p99 <= 5 ms means at least 99% are), the API server's view of the call
(``apiserver_admission_webhook_admission_duration_seconds``: TLS, HTTP and the webhook), and the
CPU the rest of the machine used meanwhile (other work on a shared machine shows in the tails).

Bounded: ``--rate`` x ``--duration`` Pods per phase and round (plus ``--warmup`` Pods per
namespace, unmeasured), each request at most 10 s; every process started here is stopped by its
PID at the end.

    python bench/webhook_latency.py [--rate 200] [--duration 5] [--rounds 2] [--warmup 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx2

from bench.procs import Adopted, CpuMeter, settle
from interkube.webhook import manifests, mutate
from testkit.kubeapi import KubeAPI, KubeObjects
from testkit.peers import find_peer
from testkit.webhook import WebhookProcess, for_loopback, parse_metrics, registered, wait_active

GOAL_MS = 5.0
WEBHOOK_CPU, API_CPU = 0, 1
#: Longest a single creation may take before the run counts it as failed (bounds the run).
REQUEST_TIMEOUT = 10.0
HISTOGRAM = "interkube_webhook_admission_duration_seconds"
APISERVER_HISTOGRAM = "apiserver_admission_webhook_admission_duration_seconds"
#: Share of a core other programs may use during a phase before the figures are called noisy.
NOISY = 0.10


@dataclass
class Phase:
    name: str
    latencies: list[float]     # seconds, of the creations that succeeded
    failed: int
    mutated: int
    behind: float              # how late the generator sent its last request, seconds
    wall: float
    foreign_cpu: float         # busy seconds of programs other than ours during the phase


def pod(namespace: str, n: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"p-{n}", "namespace": namespace, "labels": {"app": "bench"}},
            "spec": {"containers": [{"name": "main", "image": "registry.invalid/none"}]}}


async def create_pods(api: KubeAPI, namespace: str, first: int, count: int, rate: float) -> Phase:
    """Open loop: Pod i is sent at start + i/rate whatever the earlier ones are doing."""
    limits = httpx2.Limits(max_connections=64, max_keepalive_connections=64)
    latencies: list[float] = []
    failed = mutated = 0
    behind = 0.0
    async with httpx2.AsyncClient(base_url=api.url, verify=api.ssl_context(), trust_env=False,
                                  timeout=REQUEST_TIMEOUT, limits=limits) as client:
        async def one(n: int) -> None:
            nonlocal failed, mutated
            t0 = time.perf_counter()
            try:
                resp = await client.post(f"/api/v1/namespaces/{namespace}/pods", json=pod(namespace, n))
            except httpx2.HTTPError:
                failed += 1
                return
            if resp.status_code != 201:
                failed += 1
                return
            latencies.append(time.perf_counter() - t0)
            mutated += resp.json()["spec"].get("dnsPolicy") == "None"

        start = time.perf_counter()
        tasks = []
        for i in range(count):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                behind = max(behind, -delay)
            tasks.append(asyncio.create_task(one(first + i)))
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - start
    return Phase(namespace, latencies, failed, mutated, behind, wall, 0.0)


def run_phase(api: KubeAPI, ours: Sequence[Adopted], namespace: str, first: int, count: int, rate: float) -> Phase:
    cpu0 = sum(os.times()[:2])
    with CpuMeter(ours) as meter:
        phase = asyncio.run(create_pods(api, namespace, first, count, rate))
    phase.foreign_cpu = meter.foreign(sum(os.times()[:2]) - cpu0)
    return phase


def quantile(sorted_values: Sequence[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def buckets(samples: dict[str, float], name: str, labels: Callable[[str], bool] = lambda _: True) -> list[
        tuple[float, float]]:
    """(upper bound, cumulative count) of a histogram's buckets, summed over series that ``labels`` keeps."""
    out: dict[float, float] = {}
    prefix = f"{name}_bucket{{"
    for key, value in samples.items():
        if key.startswith(prefix) and labels(key):
            le = key.split('le="', 1)[1].split('"', 1)[0]
            bound = float("inf") if le == "+Inf" else float(le)
            out[bound] = out.get(bound, 0.0) + value
    return sorted(out.items())


def delta(after: list[tuple[float, float]], before: list[tuple[float, float]]) -> list[tuple[float, float]]:
    old = dict(before)
    return [(bound, count - old.get(bound, 0.0)) for bound, count in after]


def histogram_quantile(q: float, cumulative: list[tuple[float, float]]) -> float:
    """Prometheus's histogram_quantile: linear within the bucket that holds the q-th sample."""
    total = cumulative[-1][1]
    if total <= 0:
        return float("nan")
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in cumulative:
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = bound, count
    return lower


def share_within(cumulative: list[tuple[float, float]], limit: float) -> float:
    total = cumulative[-1][1]
    within = max((count for bound, count in cumulative if bound <= limit + 1e-12), default=0.0)
    return within / total if total else float("nan")


def apiserver_metrics(api: KubeAPI) -> dict[str, float]:
    return parse_metrics(api.http().get("/metrics").text)


def report(phase: Phase, label: str) -> float:
    lat = sorted(x * 1000 for x in phase.latencies)
    p50, p99 = statistics.median(lat), quantile(lat, 0.99)
    print(f"  {label:<9} {len(lat):5d} created in {phase.wall:5.1f} s ({len(lat) / phase.wall:5.1f}/s), "
          f"{phase.failed} failed, {phase.mutated} mutated; end to end p50 {p50:6.2f} ms  p99 {p99:6.2f} ms; "
          f"generator at most {phase.behind * 1000:.1f} ms behind; other programs "
          f"{phase.foreign_cpu / phase.wall * 100:.0f}% of a core")
    return p99


def merged(name: str, phases: Sequence[Phase]) -> Phase:
    return Phase(name, [x for p in phases for x in p.latencies], sum(p.failed for p in phases),
                 sum(p.mutated for p in phases), max(p.behind for p in phases), sum(p.wall for p in phases),
                 sum(p.foreign_cpu for p in phases))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="Pod creations per second (default 200)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per phase and round (default 5)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of both phases (default 2)")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured Pods per namespace first (default 200)")
    args = parser.parse_args(argv)
    apiserver, etcd = find_peer("kube-apiserver"), find_peer("etcd")
    if apiserver is None or etcd is None:
        print("kube-apiserver and etcd are not built: run scripts/build-peers", file=sys.stderr)
        return 2
    if len(os.sched_getaffinity(0)) < 2:
        print("needs two CPUs (the webhook on one, the API server and the client on the other)", file=sys.stderr)
        return 2
    count = int(args.rate * args.duration)
    os.sched_setaffinity(0, {API_CPU})
    phases: dict[str, list[Phase]] = {"baseline": [], "webhook": []}
    with tempfile.TemporaryDirectory(prefix="webhook-latency-") as tmp:
        api = KubeAPI(Path(tmp) / "kubeapi", apiserver, etcd)
        webhook = WebhookProcess(Path(tmp) / "webhook", ("--nameserver", "10.96.0.10", "--search", "cluster.all",
                                                         "--quiet"), cpus=[WEBHOOK_CPU])
        try:
            api.start()
            for pid in (api.apiserver.pid, api.etcd.process.pid):
                assert pid is not None
                os.sched_setaffinity(pid, {API_CPU})
            webhook.start()
            client = api.client()
            objects = KubeObjects(client)
            namespaces = {"webhook": objects.namespace("bench-webhook", {mutate.OPT_IN_KEY: mutate.ENABLED}),
                          "baseline": objects.namespace("bench-baseline")}
            parsed = argparse.ArgumentParser()
            manifests.add_arguments(parsed)
            config = manifests.render(parsed.parse_args(["--nameserver", "10.96.0.10", "-o", "-"]))[0]
            ours = [Adopted("kube-apiserver", api.apiserver.pid or 0), Adopted("etcd", api.etcd.process.pid or 0),
                    Adopted("webhook", webhook.pid or 0)]
            with registered(client, for_loopback(config, webhook.base_url, webhook.ca_pem,
                                                 list(namespaces.values()))):
                wait_active(client, namespaces["webhook"])
                print(f"webhook admission latency: {count} Pods per phase and round at {args.rate:g}/s, "
                      f"{args.rounds} rounds; webhook on CPU {WEBHOOK_CPU}, kube-apiserver + etcd + client on "
                      f"CPU {API_CPU}")
                for ns in namespaces.values():
                    run_phase(api, ours, ns, 0, args.warmup, args.rate)
                before, api_before = webhook.metrics(), apiserver_metrics(api)
                first = args.warmup
                for r in range(args.rounds):
                    order = ("baseline", "webhook") if r % 2 == 0 else ("webhook", "baseline")
                    for name in order:
                        settle(ours)
                        phases[name].append(run_phase(api, ours, namespaces[name], first, count, args.rate))
                    first += count
                after, api_after = webhook.metrics(), apiserver_metrics(api)
        finally:
            webhook.stop()
            api.stop()
    baseline, measured = merged("baseline", phases["baseline"]), merged("webhook", phases["webhook"])
    base_p99 = report(baseline, "baseline")
    hook_p99 = report(measured, "webhook")
    server = delta(buckets(after, HISTOGRAM), buckets(before, HISTOGRAM))
    reviews = server[-1][1]
    within = share_within(server, GOAL_MS / 1000)
    s50, s99 = (histogram_quantile(q, server) * 1000 for q in (0.5, 0.99))
    print(f"  server side (webhook's histogram, {reviews:.0f} reviews): p50 ~{s50:.2f} ms  p99 ~{s99:.2f} ms "
          f"(interpolated in buckets); {within * 100:.2f}% at or under {GOAL_MS:g} ms")

    def ours_only(key: str) -> bool:
        return "dns.interkube.io" in key

    call = delta(buckets(api_after, APISERVER_HISTOGRAM, ours_only),
                 buckets(api_before, APISERVER_HISTOGRAM, ours_only))
    if call and call[-1][1] > 0:
        print(f"  the API server's call (TLS, HTTP, webhook): {share_within(call, 0.005) * 100:.1f}% at or under "
              f"5 ms, {share_within(call, 0.025) * 100:.1f}% at or under 25 ms")
    print(f"  added end to end at p99: {hook_p99 - base_p99:+.2f} ms ({hook_p99 / base_p99:.2f}x the baseline)")
    expected = count * args.rounds
    complete = measured.failed == 0 and measured.mutated == len(measured.latencies) == expected
    verdict = "met" if within >= 0.99 and complete else "short"
    noise = measured.foreign_cpu / measured.wall
    print(f"  server-side p99 {'<=' if within >= 0.99 else '>'} {GOAL_MS:g} ms; goal <= {GOAL_MS:g} ms: {verdict}"
          + ("" if complete else f" (only {measured.mutated} of {expected} Pods stored mutated)")
          + (f"; noisy machine (other programs used {noise * 100:.0f}% of a core): run it again when quiet"
             if noise > NOISY else ""))
    return 0 if verdict == "met" else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: memory per (pod + service) object of a cluster's data, goal <= 0.5 KB.

Run ``python bench/kube_memory.py`` from the repository root. It writes a snapshot of a large
cluster (150,000 pods, 8,000 Services, 75,000 endpoint addresses in EndpointSlices of up to 100,
shaped as ``kubectl get services,endpointslices,pods -A -o json`` writes them, with the fields
a real pod has), then, in a fresh interpreter pinned to one core, loads it the way a
``kubernetes { snapshot FILE; pods verified }`` stanza does and measures how much the process
grew: resident memory (what the machine pays, fragmentation included) and the bytes Python still
holds (tracemalloc), each divided by the 158,000 pods and Services.

CoreDNS's published sizing (its kubernetes plugin's scaling notes) fits memory as 0.86 KB per
(pod + service) object plus 49 MB; the same cluster by that fit is printed next to ours.
``pods verified`` is measured because it is the mode that keeps pods; without it (the default)
pods are not kept at all, which is printed too.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run as a script from a checkout: testkit from the repository, interkube from its src/ (inserted
# src/ first, so the repository comes before it; ruff takes sys.path.insert calls for a bootstrap).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PODS = 150_000
SERVICES = 8_000
ENDPOINTS = 75_000
NAMESPACES = 200
GOAL_KB = 0.5
COREDNS_KB_PER_OBJECT = 0.86
COREDNS_FIXED_MB = 49.0


def _ip(base: int, n: int) -> str:
    return f"10.{base + (n >> 16)}.{(n >> 8) & 255}.{n & 255}"


def _pod(i: int, namespace: str, app: str) -> dict[str, object]:
    """A pod with the fields a Deployment's pod has (the ones DNS ignores included)."""
    name = f"{app}-7d9f8b6c5-{i:06x}"
    ip = _ip(244, i)
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": f"7c0e5d2a-{i:04x}-4f7e-9b1a-5c3d2e1f0a9b",
                     "resourceVersion": str(100000 + i), "creationTimestamp": "2026-01-01T00:00:00Z",
                     "generateName": f"{app}-7d9f8b6c5-", "labels": {"app": app, "pod-template-hash": "7d9f8b6c5"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{app}-7d9f8b6c5",
                                          "uid": "0b8d9c1e-2f3a-4b5c-8d7e-6f5a4b3c2d1e", "controller": True,
                                          "blockOwnerDeletion": True}]},
        "spec": {"containers": [{"name": app, "image": f"registry.example/{app}:1.4.2",
                                 "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                                 "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                                 "terminationMessagePath": "/dev/termination-log",
                                 "imagePullPolicy": "IfNotPresent"}],
                 "nodeName": f"node-{i % 500}", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                 "serviceAccountName": "default", "dnsPolicy": "ClusterFirst"},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": _ip(0, i % 500),
                   "qosClass": "Burstable", "startTime": "2026-01-01T00:00:05Z",
                   "conditions": [{"type": t, "status": "True", "lastTransitionTime": "2026-01-01T00:00:09Z"}
                                  for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
                   "containerStatuses": [{"name": app, "ready": True, "restartCount": 0, "started": True,
                                          "image": f"registry.example/{app}:1.4.2",
                                          "state": {"running": {"startedAt": "2026-01-01T00:00:08Z"}}}]},
    }


def write_snapshot(path: Path) -> None:
    """The cluster as one kubectl-style JSON List, written object by object (bounded memory)."""
    from interkube.pkg.atomicfile import replacing
    from testkit.fakekube import endpoint_slice, service

    per_service = ENDPOINTS // SERVICES          # 9, and the remainder to the first Services
    extra = ENDPOINTS - per_service * SERVICES
    with replacing(path, fsync=False) as out:  # renamed into place when complete
        out.write('{"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": [\n')
        first = True

        def emit(obj: dict[str, object]) -> None:
            nonlocal first
            out.write(("" if first else ",\n") + json.dumps(obj))
            first = False

        pod_n = 0
        for s in range(SERVICES):
            namespace, app = f"team-{s % NAMESPACES}", f"svc-{s}"
            headless = s % 10 == 0
            emit(service(namespace, app, cluster_ips=[_ip(96, s + 256)], headless=headless,
                         ports=[("http", 80, "TCP"), ("metrics", 9090, "TCP")]))
            count = per_service + (1 if s < extra else 0)
            endpoints = []
            for _ in range(count):
                endpoints.append({"ip": _ip(244, pod_n), "pod": f"{app}-7d9f8b6c5-{pod_n:06x}",
                                  "node": f"node-{pod_n % 500}"})
                emit(_pod(pod_n, namespace, app))
                pod_n += 1
            for k in range(0, len(endpoints), 100):
                emit(endpoint_slice(namespace, f"{app}-{k // 100:05x}", app, endpoints[k:k + 100],
                                    ports=[("http", 8080, "TCP"), ("metrics", 9090, "TCP")]))
        while pod_n < PODS:  # pods that back no Service (jobs, daemons)
            emit(_pod(pod_n, f"team-{pod_n % NAMESPACES}", "worker"))
            pod_n += 1
        out.write("\n]}\n")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(path: str, pods: bool, traced: bool) -> dict[str, float]:
    """In this (fresh) process: load the snapshot as a stanza does and measure the growth."""
    import tracemalloc

    from interkube.kube.cluster import Cluster
    from interkube.kube.filters import Filters
    from interkube.kube.snapshot import SnapshotSource

    source = SnapshotSource((path,), Filters(pods=pods))
    cluster = Cluster("bench", source)
    gc.collect()
    if traced:
        tracemalloc.start()
    before = rss_bytes()
    t0 = time.perf_counter()
    index = source.load(cluster)
    seconds = time.perf_counter() - t0
    cluster.preload(index)
    gc.collect()
    after = rss_bytes()
    held = tracemalloc.get_traced_memory()[0] if traced else 0
    counts = index.counts()
    return {"rss_growth": after - before, "rss_total": after, "held": held, "seconds": seconds,
            "services": counts["services"], "pods": counts["pods"], "slices": counts["endpointslices"]}


def pin_to_one_core() -> int:
    cpu = sorted(os.sched_getaffinity(0))[-1]
    os.sched_setaffinity(0, {cpu})
    return cpu


def child(path: Path, pods: bool, traced: bool) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--measure", str(path), *(["--pods"] if pods else []),
                          *(["--traced"] if traced else [])], capture_output=True, text=True, timeout=900, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", metavar="FILE", help=argparse.SUPPRESS)
    parser.add_argument("--pods", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--keep", metavar="DIR", help="write the snapshot here and keep it")
    args = parser.parse_args(argv)
    cpu = pin_to_one_core()
    if args.measure:
        print(json.dumps(measure(args.measure, args.pods, args.traced)))
        return 0

    # Memory-backed when the machine has it: the 280 MB file is written and read, never kept.
    scratch = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="kube-memory-", dir=scratch) as tmp:
        path = Path(args.keep or tmp) / "cluster.json"
        t0 = time.perf_counter()
        write_snapshot(path)
        print(f"snapshot: {PODS} pods, {SERVICES} Services, {ENDPOINTS} endpoint addresses, "
              f"{path.stat().st_size / 1e6:.0f} MB of JSON (written in {time.perf_counter() - t0:.0f} s); "
              f"pinned to cpu {cpu}")
        verified = child(path, pods=True, traced=False)
        held = child(path, pods=True, traced=True)["held"]
        default = child(path, pods=False, traced=False)

    objects = PODS + SERVICES
    kb = verified["rss_growth"] / objects / 1024
    print(f"  pods verified: {verified['rss_growth'] / 2**20:6.1f} MB resident growth, "
          f"{held / 2**20:6.1f} MB held by Python, loaded in {verified['seconds']:.1f} s "
          f"({verified['services']:.0f} Services, {verified['slices']:.0f} slices, {verified['pods']:.0f} pods kept)")
    print(f"  pods disabled: {default['rss_growth'] / 2**20:6.1f} MB resident growth (pods not kept)")
    coredns_mb = COREDNS_KB_PER_OBJECT * objects / 1024 + COREDNS_FIXED_MB
    print(f"  CoreDNS's published fit for {objects} objects: {COREDNS_KB_PER_OBJECT} KB x {objects} + "
          f"{COREDNS_FIXED_MB:g} MB = {coredns_mb:.0f} MB; interkube's process: "
          f"{verified['rss_total'] / 2**20:.0f} MB resident in all")
    verdict = "met" if kb <= GOAL_KB else "short"
    print(f"  memory per (pod + service) object: {kb:.3f} KB resident ({held / objects / 1024:.3f} KB held); "
          f"CoreDNS fit {COREDNS_KB_PER_OBJECT} KB ({COREDNS_KB_PER_OBJECT / kb:.1f}x ours); "
          f"goal <= {GOAL_KB} KB: {verdict}")
    return 0 if verdict == "met" else 1


if __name__ == "__main__":
    sys.exit(main())

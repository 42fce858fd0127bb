"""The splitdns sidecar's budget (issue 15, section 2: goal <= 40 MiB RSS and <= 5 ms p99 for a
3-server set).

A server shaped as `interkube render sidecar` makes it: the Corefile the command renders
(splitdns with one pod rule and a host rule, a kubernetes stanza reading one namespace, forward
and cache to the cluster DNS) and the container's flags, bound to 127.0.0.1 on a free port. The cluster is the test
kube-apiserver (etcd + kube-apiserver on loopback, built by scripts/build-peers), read through
a kubeconfig (JSON: like the service account a sidecar in a pod reads, it needs no YAML parser),
with a 3-server StatefulSet's headless
Service and endpoints; without the peers (or with --snapshot), a snapshot file of the same
objects (which loads less code: a lower RSS than in a pod). The cluster DNS is a fake upstream
on loopback that answers every other name.

The server is pinned to CPU 0 and the harness's C load generator (bench/loadgen) to CPU 1, in
open loop at --rate queries/s (a sidecar serves one pod: a few hundred queries a second is
already much): the servers' names (A and AAAA, answered from memory), and names forwarded to
the cluster DNS. Printed: RSS after start, peak RSS (VmHWM) after the load, p50/p99 of each set.
The server runs with its bytecode compiled, as an installed package does (see bench/footprint.py:
a start that compiles stale modules peaks 10 MiB higher); one start before the measured one fills
that cache.

    python bench/splitdns_sidecar.py [--rate 500] [--duration 10] [--snapshot]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.footprint import compiled_env
from bench.generators import Loadgen, LoadSpec
from bench.procs import Proc, status_kib, stop_all, wait_until
from interkube.deploy.sidecar import SERVE_FLAGS
from interkube.deploy.sidecar import corefile as sidecar_corefile
from testkit.fakekube import endpoint_slice, service, write_snapshot
from testkit.fakeupstream import Behaviour, in_thread
from testkit.peers import find_peer
from testkit.servers import free_port, query

GOAL_RSS_MIB = 40
GOAL_P99_MS = 5.0
NAMESPACE = "shop"
SERVERS = 3
REGEX = r"^db-([0-9]+)\.db\.example\.com\.$"
TEMPLATE = f"db-{{1}}.db-headless.{NAMESPACE}.svc.cluster.local."
FORWARDED = [f"svc-{i}.example.net." for i in range(20)]


def pod_ip(i: int) -> str:
    return f"10.244.1.{10 + i}"


def objects() -> list[dict[str, object]]:
    endpoints = [{"ip": pod_ip(i), "hostname": f"db-{i}"} for i in range(SERVERS)]
    return [service(NAMESPACE, "db-headless", headless=True, ports=[("db", 2113, "TCP")]),
            endpoint_slice(NAMESPACE, "db-headless-a", "db-headless", endpoints, ports=[("db", 2113, "TCP")])]


@contextlib.contextmanager
def cluster(tmp: Path, snapshot: bool) -> Iterator[tuple[str, str]]:
    """(the kubernetes stanza's source line, what it is) for the objects."""
    apiserver, etcd = find_peer("kube-apiserver"), find_peer("etcd")
    if snapshot or apiserver is None or etcd is None:
        path = write_snapshot(tmp / "cluster.yaml", objects())
        yield f"snapshot {path}", "a snapshot file (no kube-apiserver built, or --snapshot)"
        return
    from testkit.kubeapi import KubeAPI, KubeObjects

    api = KubeAPI(tmp / "kubeapi", apiserver, etcd)
    try:
        api.start()
        kube = KubeObjects(api.client())
        kube.namespace(NAMESPACE)
        kube.headless_service(NAMESPACE, "db-headless", ports=(("db", 2113, "TCP"),))
        kube.endpoint_slice(NAMESPACE, "db-headless-a", service="db-headless", ports=(("db", 2113, "TCP"),),
                            addresses=[{"addresses": [pod_ip(i)], "hostname": f"db-{i}",
                                        "conditions": {"ready": True}} for i in range(SERVERS)])
        # As JSON (kubectl reads it too): the sidecar in a pod reads its service account's plain
        # files, which need no YAML parser either; a YAML kubeconfig would load one (1 MiB).
        kubeconfig = tmp / "kubeconfig.json"
        kubeconfig.write_text(json.dumps(yaml.safe_load(Path(api.kubeconfig).read_text())))
        yield f"kubeconfig {kubeconfig}", "the test kube-apiserver, read through a kubeconfig (JSON)"
    finally:
        api.stop()


def localized(text: str, port: int, upstream: str, source: str) -> str:
    """The rendered Corefile on this machine: a free port on 127.0.0.1, the fake cluster DNS, and
    the cluster read from ``source``."""
    for old, new in (("    bind 127.0.0.1 ::1\n", "    bind 127.0.0.1\n"), (".:53 {", f".:{port} {{"),
                     ("forward . 192.0.2.53", f"forward . {upstream}"),
                     (f"        namespaces {NAMESPACE}\n", f"        namespaces {NAMESPACE}\n        {source}\n")):
        assert old in text, old
        text = text.replace(old, new)
    return text


def answering(port: int) -> bool:
    answer = query("db-0.db.example.com", "A", port, timeout=0.3).answer
    return [rd.to_text() for rrset in answer for rd in rrset] == [pod_ip(0)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=500.0, help="offered queries/s per set (default 500)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of load per set (default 10)")
    ap.add_argument("--snapshot", action="store_true", help="a snapshot file instead of the kube-apiserver")
    opts = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="interkube-bench-sidecar-"))
    sets = {"servers' names": tmp / "servers.txt", "forwarded": tmp / "forwarded.txt"}
    sets["servers' names"].write_text("".join(f"db-{i}.db.example.com {t}\n" for i in range(SERVERS)
                                              for t in ("A", "AAAA")))
    sets["forwarded"].write_text("".join(f"{name} A\n" for name in FORWARDED))
    rendered = sidecar_corefile(namespace=NAMESPACE, zones=["db.example.com"], pods=[(REGEX, TEMPLATE)],
                                hosts=[("db-3.db.example.com", "10.20.0.13")], cluster_dns="192.0.2.53")
    gen = Loadgen()
    behaviour = Behaviour(records={(name, "A"): ["198.51.100.1"] for name in FORWARDED})
    results = {}
    try:
        with cluster(tmp, opts.snapshot) as (source, source_text), in_thread(behaviour) as upstream:
            port = free_port()
            path = tmp / "Corefile"
            path.write_text(localized(rendered, port, upstream.address, source))
            argv: list[str | Path] = [sys.executable, "-m", "interkube", "serve", "-conf", path, *SERVE_FLAGS, "-quiet"]
            env = compiled_env(tmp / "pycache")
            warm_up = Proc("sidecar-warm-up", argv, tmp / "warm-up.log", cpus=(0,), env=env).start()
            wait_until(functools.partial(answering, port), 60, warm_up, "answering")
            warm_up.stop()
            server = Proc("sidecar", argv, tmp / "server.log", cpus=(0,), env=env).start()
            wait_until(functools.partial(answering, port), 60, server, "answering")
            rss_start = status_kib(server.pid, "VmRSS")
            for name, file in sets.items():
                gen.run(LoadSpec(port=port, query_file=file, duration=1.0, rate=opts.rate, cpus=(1,)))  # built
                results[name] = gen.run(LoadSpec(port=port, query_file=file, duration=opts.duration, rate=opts.rate,
                                                 conns=2, cpus=(1,)))
            rss_end, hwm = status_kib(server.pid, "VmRSS"), status_kib(server.pid, "VmHWM")
            server.stop()
    finally:
        stop_all()
    print(f"a sidecar for {SERVERS} servers reading {source_text}; server on CPU 0, loadgen on CPU 1, open loop at "
          f"{opts.rate:g} q/s for {opts.duration:g} s per set:")
    print(f"  RSS after start {rss_start / 1024:.1f} MiB, after the load {rss_end / 1024:.1f} MiB, "
          f"peak (VmHWM) {hwm / 1024:.1f} MiB (goal <= {GOAL_RSS_MIB} MiB): "
          f"{'met' if hwm / 1024 <= GOAL_RSS_MIB else 'short'}")
    for name, r in results.items():
        print(f"  {name:15s} p50 {r.p50_us / 1000:.2f} ms  p99 {r.p99_us / 1000:.2f} ms  lost {r.loss:.2%}  "
              f"rcodes {r.rcodes}")
    p99 = results["servers' names"].p99_us / 1000
    verdict = "met" if p99 <= GOAL_P99_MS else "short"
    print(f"p99 of the servers' names {p99:.2f} ms (goal <= {GOAL_P99_MS:g} ms): {verdict}")


if __name__ == "__main__":
    main()

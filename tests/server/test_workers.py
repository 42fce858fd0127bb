"""Several workers on one port (SO_REUSEPORT): all answer, signals reach all, metrics merge."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import dns.rcode
import pytest

from interkube.server.workers import SHARED_WATCH_ENV, merge_expositions
from testkit.fakekube import FakeKube, serving_in_thread, service, write_kubeconfig
from testkit.servers import free_port, query, stop_process, wait_for_dns


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def test_two_workers_share_the_port_and_merge_metrics(tmp_path: Path) -> None:
    port, http = free_port(), free_port()
    zone = tmp_path / "example.db"
    zone.write_text("$ORIGIN example.org.\n@ 3600 IN SOA ns h 1 7200 3600 1209600 3600\n@ IN NS ns\n"
                    "ns IN A 127.0.0.1\nwww IN A 192.0.2.1\n")
    core = tmp_path / "Corefile"
    core.write_text(f"example.org:{port} {{\n bind 127.0.0.1\n prometheus 127.0.0.1:{http}\n file {zone}\n}}\n")
    proc = subprocess.Popen([sys.executable, "-m", "interkube", "serve", "-conf", str(core), "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_dns(port, proc=proc)  # type: ignore[arg-type]
        deadline = time.monotonic() + 10
        while len(children_of(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(children_of(proc.pid)) == 2
        # Each query on a new socket (new source port): the kernel spreads them over both.
        for _ in range(200):
            r = query("www.example.org.", "A", port)
            assert r.rcode() == dns.rcode.NOERROR and r.answer[0][0].address == "192.0.2.1"
        deadline = time.monotonic() + 10
        total = 0.0
        while time.monotonic() < deadline:
            text = urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=5).read().decode()
            total = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                        if line.startswith("interkube_dns_requests_total{"))
            if total >= 200:
                break
            time.sleep(0.1)
        # wait_for_dns's probes count too (REFUSED ones never reach the chain).
        assert total >= 200
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        stop_process(proc)  # type: ignore[arg-type]
    assert children_of(proc.pid) == []


def test_a_worker_that_dies_is_restarted(tmp_path: Path) -> None:
    port = free_port()
    core = tmp_path / "Corefile"
    core.write_text(f"example.org:{port} {{\n bind 127.0.0.1\n errors\n}}\n")
    proc = subprocess.Popen([sys.executable, "-m", "interkube", "serve", "-conf", str(core), "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_dns(port, proc=proc)  # type: ignore[arg-type]
        time.sleep(5.5)  # past the crash-loop guard
        victims = children_of(proc.pid)
        assert len(victims) == 2
        os.kill(victims[0], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            now = children_of(proc.pid)
            if len(now) == 2 and victims[0] not in now:
                break
            time.sleep(0.05)
        assert len(children_of(proc.pid)) == 2 and victims[0] not in children_of(proc.pid)
        assert query("a.example.org.", "A", port).rcode() == dns.rcode.SERVFAIL
    finally:
        stop_process(proc)  # type: ignore[arg-type]


def test_merge_sums_counters_and_buckets_and_keeps_info_gauges() -> None:
    a = ('# HELP x_total X.\n# TYPE x_total counter\nx_total{z="a"} 2.0\n'
         '# HELP i_info I.\n# TYPE i_info gauge\ni_info{v="1"} 1.0\n'
         '# HELP h H.\n# TYPE h histogram\nh_bucket{le="1.0"} 1.0\nh_bucket{le="+Inf"} 2.0\nh_count 2.0\nh_sum 3.0\n')
    b = a.replace("2.0", "5.0")
    merged = merge_expositions([a, b])
    assert 'x_total{z="a"} 7.0' in merged
    assert 'i_info{v="1"} 1.0' in merged
    assert 'h_bucket{le="+Inf"} 7.0' in merged and "h_sum 6.0" in merged


@pytest.mark.parametrize("shared", [False, True], ids=["each-worker-watches", "shared-watch"])
def test_every_worker_answers_a_change_at_the_api(tmp_path: Path, shared: bool) -> None:
    """Each worker watches the API (the default), or worker 0 alone and it feeds the other
    (INTERKUBE_SHARED_WATCH=1); either way, every worker answers the new data."""
    kube = FakeKube(watch=True)
    kube.add_all([service("app", "web", cluster_ips=["10.96.0.10"]),
                  service("default", "kubernetes", cluster_ips=["10.96.0.1"])])
    port = free_port()
    core = tmp_path / "Corefile"
    with serving_in_thread(kube):
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"bench": kube})
        core.write_text(f"cluster.local:{port} {{\n bind 127.0.0.1\n kubernetes cluster.local {{\n"
                        f"  kubeconfig {kubeconfig} bench\n }}\n}}\n")
        env = {**os.environ, SHARED_WATCH_ENV: "1" if shared else "0"}
        proc = subprocess.Popen([sys.executable, "-m", "interkube", "serve", "-conf", str(core), "--workers", "2"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        try:
            wait_for_dns(port, proc=proc)  # type: ignore[arg-type]

            def answers(name: str) -> set[str | None]:
                """The addresses answered to 64 queries, each from a new source port (so from
                both workers: the kernel picks a worker by the 4-tuple)."""
                return {r.answer[0][0].address if r.answer else None for r in (query(name, "A", port) for _ in range(64))}

            converge(lambda: len(children_of(proc.pid)) == 2 and answers("web.app.svc.cluster.local.") == {"10.96.0.10"})
            # Worker 0 watches services, endpointslices and namespaces; so does worker 1 unless shared.
            assert kube.watchers == (3 if shared else 6)
            assert kube.counters["list"] == (3 if shared else 6)  # one page each
            assert kube._loop is not None  # the fake's store belongs to its thread's loop
            kube._loop.call_soon_threadsafe(kube.add, service("app", "new", cluster_ips=["10.96.0.99"]))
            converge(lambda: answers("new.app.svc.cluster.local.") == {"10.96.0.99"})
        finally:
            stop_process(proc)  # type: ignore[arg-type]


def converge(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll until ``condition()`` holds; fail after ``timeout`` (a bound, not a measurement)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "never converged"
        time.sleep(0.05)

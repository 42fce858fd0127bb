"""Several workers on one port (SO_REUSEPORT): all answer, signals reach all, metrics merge."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.exception
import dns.rcode
import pytest
from aiohttp import web

from interkube.server.workers import MIN_UPTIME_ENV, SHARED_WATCH_ENV, merge_expositions
from testkit.fakekube import FakeKube, service, serving_in_thread, write_kubeconfig
from testkit.servers import free_port, interkube_process, process_output, query
from testkit.waiting import wait_until


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
    with interkube_process(core, port, args=("--workers", "2")) as proc:
        wait_until(lambda: len(children_of(proc.pid)) >= 2, "two workers started", 10)
        assert len(children_of(proc.pid)) == 2
        # Each query on a new socket (new source port): the kernel spreads them over both.
        for _ in range(200):
            r = query("www.example.org.", "A", port)
            assert r.rcode() == dns.rcode.NOERROR and r.answer[0][0].address == "192.0.2.1"

        def requests_total() -> float:
            text = urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=5).read().decode()
            return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith("interkube_dns_requests_total{"))

        # At least the 200 queries in both workers' metrics merged (wait_for_dns's probes count
        # too; REFUSED ones never reach the chain).
        wait_until(lambda: requests_total() >= 200, "the 200 queries counted in the merged metrics", 10,
                   every=0.1)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(15) == 0
    assert children_of(proc.pid) == []


@contextlib.contextmanager
def two_workers(tmp_path: Path, min_uptime: str) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """``interkube serve --workers 2`` with the crash-loop guard at ``min_uptime`` seconds, once
    both workers run: the process, its port and its Corefile."""
    port = free_port()
    core = tmp_path / "Corefile"
    core.write_text(f"example.org:{port} {{\n bind 127.0.0.1\n errors\n}}\n")
    with interkube_process(core, port, env={MIN_UPTIME_ENV: min_uptime}, args=("--workers", "2")) as proc:
        wait_until(lambda: len(children_of(proc.pid)) == 2, "two workers", 20)
        yield proc, port, core


def test_a_worker_that_dies_is_restarted(tmp_path: Path) -> None:
    # No crash-loop guard: the worker may be killed at once, as any time after the guard.
    with two_workers(tmp_path, min_uptime="0") as (proc, port, _):
        victims = children_of(proc.pid)
        assert len(victims) == 2
        os.kill(victims[0], signal.SIGKILL)
        wait_until(lambda: len(now := children_of(proc.pid)) == 2 and victims[0] not in now,
                   "the killed worker replaced", 20)
        assert query("a.example.org.", "A", port).rcode() == dns.rcode.SERVFAIL


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
        env = {SHARED_WATCH_ENV: "1" if shared else "0"}
        with interkube_process(core, port, env=env, args=("--workers", "2")) as proc:

            def answers(name: str) -> set[str | None]:
                """The addresses answered to 64 queries, each from a new source port (so from
                both workers: the kernel picks a worker by the 4-tuple)."""
                replies = (query(name, "A", port) for _ in range(64))
                return {r.answer[0][0].address if r.answer else None for r in replies}

            wait_until(lambda: len(children_of(proc.pid)) == 2
                       and answers("web.app.svc.cluster.local.") == {"10.96.0.10"},
                       "both workers answering from the first list", 20)
            # Worker 0 watches services, endpointslices and namespaces; so does worker 1 unless
            # shared. A worker answers once it has listed; its watches open just after that.
            watches = 3 if shared else 6
            wait_until(lambda: kube.watchers >= watches, f"{watches} watches open", 20)
            assert kube.watchers == watches
            assert kube.counters["list"] == (3 if shared else 6)  # one page each
            assert kube._loop is not None  # the fake's store belongs to its thread's loop
            kube._loop.call_soon_threadsafe(kube.add, service("app", "new", cluster_ips=["10.96.0.99"]))
            wait_until(lambda: answers("new.app.svc.cluster.local.") == {"10.96.0.99"},
                       "both workers answering the new Service", 20)


def test_a_worker_that_dies_at_once_stops_the_server(tmp_path: Path) -> None:
    """The crash-loop guard: a worker that dies within the guard's seconds of its start is not
    started again; the whole server stops, with a failure status and a line saying why."""
    # A guard no test outlasts: the worker surely dies within it.
    with two_workers(tmp_path, min_uptime="3600") as (proc, _, core):
        victims = children_of(proc.pid)
        os.kill(victims[0], signal.SIGKILL)
        assert proc.wait(15) == 128 + signal.SIGKILL
        assert f"exited with status {-signal.SIGKILL}" in process_output(proc)
        assert "starting it again" not in process_output(proc)
    assert not [pid for pid in victims if alive_with(pid, str(core))]  # the other worker went too


def alive_with(pid: int, word: str) -> bool:
    """Whether ``pid`` is a live process whose command line holds ``word`` (a worker of ours:
    forked, not exec'd, it keeps its parent's command line); False for a PID since reused."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return word in cmdline and state != "Z"


def udp_sockets_on(port: int) -> int:
    """How many UDP sockets are bound to 127.0.0.1:``port``: the workers serving it (each binds
    its own, SO_REUSEPORT; a worker binds once its clusters have synced)."""
    local = f"0100007F:{port:04X}"
    with open("/proc/net/udp") as f:
        return sum(1 for line in f if line.split()[1:2] == [local])


def shared_watch_leader(parent: int) -> int | None:
    """Worker 0 of a shared watch: the child of ``parent`` holding a listening socket of the
    feed (kube-*.sock; followers connect without a name). None while no child does."""
    listening = set()
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            fields = line.split()
            # Flags 00010000 is __SO_ACCEPTCON: a socket that listen() was called on.
            if len(fields) >= 8 and fields[3] == "00010000" and os.path.basename(fields[7]).startswith("kube-"):
                listening.add(f"socket:[{fields[6]}]")
    for pid in children_of(parent):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in listening:
                    return pid
    return None


class Querier(threading.Thread):
    """Asks one name over and over, each query from a new source port (so the kernel spreads
    them over every worker bound), and counts the outcomes."""

    def __init__(self, name: str, address: str, port: int) -> None:
        super().__init__(name="querier", daemon=True)
        self.qname, self.address, self.port = name, address, port
        self.halt = threading.Event()
        self.outcomes: Counter[str] = Counter()
        #: Answers given while one worker alone was bound: worker 0 was dead (or restarting and
        #: not synced yet), so the follower answered them.
        self.follower_alone = 0

    def run(self) -> None:
        while not self.halt.is_set():
            alone = udp_sockets_on(self.port) == 1
            try:
                reply = query(self.qname, "A", self.port, timeout=3.0)
            except dns.exception.Timeout:
                self.outcomes["unanswered"] += 1
                continue
            rcode = dns.rcode.to_text(reply.rcode())
            if rcode == "NOERROR":
                got = {rr.address for rrset in reply.answer for rr in rrset}
                rcode = "right" if got == {self.address} else f"wrong {sorted(got)}"
            self.outcomes[rcode] += 1
            if alone and udp_sockets_on(self.port) == 1:
                self.follower_alone += 1


def test_a_follower_answers_while_worker_0_is_killed_and_restarted(tmp_path: Path) -> None:
    """The shared watch under fire: worker 0 (which alone watches the API) is killed over and
    over while a client asks; the follower answers from its data all along, SERVFAIL never, and
    after each restart every worker has the change made while worker 0 was gone.

    The restarted worker 0's lists are held at the fake API until the follower has answered a
    number of queries alone: worker 0 binds its DNS sockets only once it has synced, so until
    then every query reaches the follower, linked to a worker 0 that has no data yet."""
    kills, alone_per_kill = 5, 20
    kube = FakeKube(watch=True)
    kube.add_all([service("app", "web", cluster_ips=["10.96.0.10"]),
                  service("default", "kubernetes", cluster_ips=["10.96.0.1"])])
    plain_list = kube.handlers["list"]
    held: list[str] = []
    port = free_port()
    core = tmp_path / "Corefile"
    seen: set[int] = set()  # every worker PID, to check that none outlives the test
    with serving_in_thread(kube):
        loop = kube._loop  # the fake's store and handlers belong to its thread's loop
        assert loop is not None
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"bench": kube})
        # A startup_timeout beyond every wait here: a restarted worker 0 whose lists are held
        # must not give up and bind unsynced (it would answer SERVFAIL itself).
        core.write_text(f"cluster.local:{port} {{\n bind 127.0.0.1\n kubernetes cluster.local {{\n"
                        f"  kubeconfig {kubeconfig} bench\n  startup_timeout 120s\n }}\n}}\n")
        # No crash-loop guard: a worker 0 may be killed soon after it was started again.
        env = {SHARED_WATCH_ENV: "1", MIN_UPTIME_ENV: "0"}
        # Two clients: while one waits out a query lost with worker 0, the other goes on.
        queriers = [Querier("web.app.svc.cluster.local.", "10.96.0.10", port) for _ in range(2)]

        def follower_alone() -> int:
            return sum(q.follower_alone for q in queriers)

        other: Counter[str] = Counter()  # the outcomes of the convergence checks' queries
        output = ""

        def answers(name: str) -> set[str | None]:
            """The addresses answered to 64 queries, each from a new source port (so from both
            workers: the kernel picks a worker by the 4-tuple)."""
            got: set[str | None] = set()
            for _ in range(64):
                reply = query(name, "A", port)
                other[dns.rcode.to_text(reply.rcode())] += 1
                got.add(reply.answer[0][0].address if reply.answer else None)
            return got

        async def hold_lists() -> asyncio.Event:
            """From now on the fake's lists wait for the event returned (set it in ``loop``)."""
            release = asyncio.Event()

            async def held_list(request: web.Request, *args: Any) -> web.StreamResponse:
                held.append(request.path)
                await release.wait()
                return await plain_list(request, *args)

            kube.handlers["list"] = held_list
            return release

        def release_lists(release: asyncio.Event) -> None:
            kube.handlers["list"] = plain_list
            release.set()

        try:
            with interkube_process(core, port, env=env, args=("--workers", "2")) as proc:
                try:
                    wait_until(lambda: len(children_of(proc.pid)) == 2 and udp_sockets_on(port) == 2
                               and answers("web.app.svc.cluster.local.") == {"10.96.0.10"},
                               "both workers listening and answering", 20)
                    for querier in queriers:
                        querier.start()
                    for k in range(kills):
                        seen.update(children_of(proc.pid))
                        victim = shared_watch_leader(proc.pid)
                        assert victim is not None
                        release = asyncio.run_coroutine_threadsafe(hold_lists(), loop).result(10)
                        lists, alone = len(held), follower_alone()
                        os.kill(victim, signal.SIGKILL)
                        loop.call_soon_threadsafe(kube.add, service("app", f"meanwhile-{k}",
                                                                    cluster_ips=[f"10.96.1.{k}"]))

                        def restarted_and_follower_alone(victim: int = victim, lists: int = lists,
                                                         alone: int = alone) -> bool:
                            """Worker 0 started again, its lists waiting; the follower answered alone."""
                            return (shared_watch_leader(proc.pid) not in (None, victim) and len(held) > lists
                                    and follower_alone() >= alone + alone_per_kill)

                        def changed_everywhere(k: int = k) -> bool:
                            return answers(f"meanwhile-{k}.app.svc.cluster.local.") == {f"10.96.1.{k}"}

                        try:
                            wait_until(restarted_and_follower_alone,
                                       "worker 0 started again and the follower answering alone", 20)
                        finally:
                            loop.call_soon_threadsafe(release_lists, release)
                        # Synced (it binds only then), and its data at the follower.
                        wait_until(lambda: udp_sockets_on(port) == 2, "the restarted worker 0 listening", 20)
                        wait_until(changed_everywhere, f"meanwhile-{k} answered by both workers", 20)
                finally:
                    seen.update(children_of(proc.pid))
                    for querier in queriers:
                        querier.halt.set()
                    for querier in queriers:
                        querier.join(10)
                    output = process_output(proc)
        finally:
            for pid in seen:  # stop_process stopped the parent; no worker may outlive it
                if alive_with(pid, str(core)):
                    os.kill(pid, signal.SIGKILL)
    assert not [q for q in queriers if q.is_alive()]
    outcomes = sum((q.outcomes for q in queriers), Counter[str]())
    assert outcomes["SERVFAIL"] == 0 and other["SERVFAIL"] == 0, (outcomes, other, output)
    assert set(outcomes) <= {"right", "unanswered"}, (outcomes, output)  # never a wrong answer
    # A kill loses at most the query each client has in flight to worker 0 (its socket's queue
    # dies with it).
    assert outcomes["unanswered"] <= kills * len(queriers), outcomes
    assert output.count(f"exited with status {-signal.SIGKILL}; starting it again") == kills, output
    assert not [pid for pid in seen if alive_with(pid, str(core))]

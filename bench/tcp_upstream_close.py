"""Forwarding over TCP to an upstream that closes connections after 100 queries (issue 19, section 4).

    python bench/tcp_upstream_close.py [--queries 8000] [--conns 4] [--window 64] [--rounds 3]
                                       [--dnsmasq-mode fork|debug] [--forwarders interkube,coredns]

dnsmasq is the upstream: it closes a TCP connection after 100 queries (TCP_MAX_QUERIES) and
leaves what was pipelined past those unread. Each forwarder (interkube; CoreDNS 1.15 when built
by scripts/build-peers) runs ``forward . 127.0.0.1:PORT { force_tcp }`` on CPU 0; this script
sends QUERIES queries over CONNS client TCP connections, WINDOW in flight on each, and counts
the answers by rcode, the unanswered, and the time the whole batch took. For interkube, the
connections dnsmasq closed under queries, the queries sent again and the upstream exchanges that
failed are read from its /metrics. Rounds alternate the forwarders so that drift hits them alike;
the median round is printed. The goal is correctness (0 SERVFAIL, 0 unanswered); QPS is shown
next to CoreDNS's from the same run.

``--dnsmasq-mode fork`` (default) is how dnsmasq runs as a service: a child process per TCP
connection. ``debug`` adds ``--no-daemon`` as testkit does: then dnsmasq serves one TCP
connection at a time, to its end.

Loopback only; bounded by the query count (and 30 s without an answer per connection); every
process started here is stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import dns.message
import dns.rcode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from interkube.pkg.framing import frame
from testkit.peers import find_peer
from testkit.processes import stop_process
from testkit.servers import LOOPBACK, free_port, read_frame, wait_for_dns

NAMES = 50
#: How long a client connection waits for its next answer before counting the rest unanswered.
QUIET = 30.0


def pinned(cpu: int | None):  # type: ignore[no-untyped-def]
    return (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None


def cpus() -> tuple[int | None, int | None]:
    mine = sorted(os.sched_getaffinity(0))
    return (mine[0], mine[1]) if len(mine) >= 2 else (None, None)


def start_dnsmasq(port: int, mode: str, cpu: int | None) -> subprocess.Popen[bytes]:
    exe = shutil.which("dnsmasq")
    if exe is None:
        raise SystemExit("dnsmasq is not installed (Debian package dnsmasq)")
    user = "--user=root" if os.geteuid() == 0 else "--user=" + os.environ.get("USER", "nobody")
    argv = [exe, "--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-poll", f"--listen-address={LOOPBACK}",
            "--bind-interfaces", f"--port={port}", "--log-facility=/dev/null", user, "--pid-file=", "--cache-size=0",
            *(f"--host-record=h{i}.example,192.0.2.{i + 1}" for i in range(NAMES))]
    if mode == "debug":
        argv.append("--no-daemon")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pinned(cpu))
    wait_for_dns(port, proc=proc)
    return proc


def start_forwarder(name: str, workdir: Path, port: int, upstream: int, metrics: int,
                    cpu: int | None) -> subprocess.Popen[bytes]:
    conf = workdir / f"Corefile.{name}"
    prometheus = f" prometheus {LOOPBACK}:{metrics}\n" if name == "interkube" else ""
    conf.write_text(f"example.:{port} {{\n bind {LOOPBACK}\n{prometheus}"
                    f" forward . {LOOPBACK}:{upstream} {{\n  force_tcp\n }}\n}}\n")
    if name == "interkube":
        argv = [sys.executable, "-m", "interkube", "serve", "-quiet", "-conf", str(conf)]
    else:
        exe = find_peer("coredns")
        assert exe is not None
        argv = [str(exe), "-quiet", "-conf", str(conf)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pinned(cpu))
    wait_for_dns(port, timeout=20, proc=proc)
    return proc


async def one_connection(port: int, count: int, window: int, offset: int) -> collections.Counter[str]:
    """``count`` queries on one connection, ``window`` in flight; rcodes counted."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    wires = [frame(dns.message.make_query(f"h{(offset + i) % NAMES}.example.", "A").to_wire()) for i in range(count)]
    got: collections.Counter[str] = collections.Counter()
    sent = min(window, count)
    writer.write(b"".join(wires[:sent]))
    answered = 0
    try:
        while answered < count:
            try:
                msg = await read_frame(reader, timeout=QUIET)
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                break
            answered += 1
            got[dns.rcode.to_text(dns.message.from_wire(msg).rcode())] += 1
            if sent < count:
                writer.write(wires[sent])
                sent += 1
    finally:
        writer.close()
    got["unanswered"] += count - answered
    return got


async def batch(port: int, queries: int, conns: int, window: int) -> tuple[collections.Counter[str], float]:
    share = [queries // conns + (1 if i < queries % conns else 0) for i in range(conns)]
    started = time.monotonic()
    results = await asyncio.gather(*(one_connection(port, n, window, i * 7) for i, n in enumerate(share)))
    elapsed = time.monotonic() - started
    total: collections.Counter[str] = collections.Counter()
    for r in results:
        total.update(r)
    return total, elapsed


def scrape(metrics: int) -> dict[str, float]:
    """interkube's forward counters that tell what the upstream's closes cost."""
    with urllib.request.urlopen(f"http://{LOOPBACK}:{metrics}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    wanted = ("interkube_forward_conn_closed_early_total", "interkube_forward_conn_retries_total",
              "interkube_forward_requests_total")
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"(\w+)\{[^}]*\} ([\d.e+]+)$", line)
        if m and m.group(1) in wanted:
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--queries", type=int, default=8000, help="queries per round (default 8000)")
    p.add_argument("--conns", type=int, default=4, help="client TCP connections (default 4)")
    p.add_argument("--window", type=int, default=64, help="queries in flight per connection (default 64)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per forwarder (default 3)")
    p.add_argument("--dnsmasq-mode", choices=("fork", "debug"), default="fork")
    p.add_argument("--forwarders", default="interkube,coredns", help="comma-separated: interkube, coredns")
    args = p.parse_args()
    names = [n for n in args.forwarders.split(",") if n]
    if "coredns" in names and find_peer("coredns") is None:
        print("coredns not built (scripts/build-peers): interkube only", file=sys.stderr)
        names.remove("coredns")
    server_cpu, load_cpu = cpus()
    if load_cpu is not None:
        os.sched_setaffinity(0, {load_cpu})
    rows: dict[str, list[tuple[collections.Counter[str], float]]] = {n: [] for n in names}
    counters: dict[str, float] = {}
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="interkube-bench-tcpclose-") as tmp:
        try:
            up_port = free_port()
            procs.append(start_dnsmasq(up_port, args.dnsmasq_mode, load_cpu))
            ports = {}
            metrics = free_port()
            for n in names:
                ports[n] = free_port()
                procs.append(start_forwarder(n, Path(tmp), ports[n], up_port, metrics, server_cpu))
            for _ in range(args.rounds):
                for n in names:
                    rows[n].append(asyncio.run(batch(ports[n], args.queries, args.conns, args.window)))
            if "interkube" in names:
                counters = scrape(metrics)
        finally:
            for proc in reversed(procs):
                stop_process(proc)
    print(f"forward over TCP to dnsmasq ({args.dnsmasq_mode} mode, closes after 100 queries); "
          f"{args.queries} queries per round over {args.conns} connections x {args.window} in flight; "
          f"{args.rounds} rounds; forwarder on cpu {server_cpu}, dnsmasq and client on cpu {load_cpu}")
    print(f"{'forwarder':<11}{'NOERROR':>9}{'SERVFAIL':>10}{'unanswered':>12}{'median s':>10}{'median QPS':>12}")
    medians = {}
    for n, rounds in rows.items():
        total: collections.Counter[str] = collections.Counter()
        for got, _ in rounds:
            total.update(got)
        secs = statistics.median(s for _, s in rounds)
        medians[n] = args.queries / secs
        print(f"{n:<11}{total['NOERROR']:>9}{total['SERVFAIL']:>10}{total['unanswered']:>12}{secs:>10.2f}"
              f"{medians[n]:>12,.0f}")
    if counters:
        print("interkube over all rounds: "
              f"{counters.get('interkube_forward_requests_total', 0):.0f} upstream exchanges, "
              f"{counters.get('interkube_forward_conn_closed_early_total', 0):.0f} connections closed under "
              f"queries, {counters.get('interkube_forward_conn_retries_total', 0):.0f} queries sent again")
    if "coredns" in medians and "interkube" in medians:
        print(f"QPS ratio interkube/CoreDNS: {medians['interkube'] / medians['coredns']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

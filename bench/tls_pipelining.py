"""DNS over TLS against plain TCP, one reused connection each, queries pipelined.

    python bench/tls_pipelining.py [--seconds 4] [--rounds 3] [--window 64]

One `interkube serve` answers the same name from memory (the hosts plugin) on a `tls://` block
and a plain block; it is pinned to one core, the load generator to another. The load generator
keeps WINDOW queries in flight on ONE connection (RFC 7766/7858 pipelining) for SECONDS: dnsperf
(`-m dot` / `-m tcp`, `-c 1`) when installed, else a small pipelined client built in here.
Rounds alternate TCP and TLS so that drift hits both alike; the figure per transport is the
median round (the best is shown beside it), and the ratio TLS/TCP is printed with them. The
server's CPU use per round is printed as a check that the server, not the load generator, was
the limit (near 100% means it was).

Bounded in time: about ROUNDS x 2 x (SECONDS + 1) seconds plus start-up. Every process started
here is stopped by its PID.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dns.message

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from interkube.pkg.framing import FrameReader, frame
from testkit.processes import stop_process
from testkit.servers import LOOPBACK, free_port, wait_listening

QNAME = "www.bench.example"
SERVER_NAME = "dns.bench"


def cpus() -> tuple[int, int] | None:
    """(server core, load-generator core), or None when this machine has a single core."""
    mine = sorted(os.sched_getaffinity(0))
    return (mine[0], mine[1]) if len(mine) >= 2 else None


def pinned(cpu: int | None):  # type: ignore[no-untyped-def]
    return (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the built-in load generator (when dnsperf is missing) --------------------------------------


def client(port: int, tls: bool, ca: str, seconds: float, window: int) -> None:
    """Keep ``window`` queries in flight on one connection for ``seconds``; print the count."""
    framed = frame(dns.message.make_query(QNAME, "A").to_wire())
    sock: socket.socket = socket.create_connection((LOOPBACK, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls:
        ctx = ssl.create_default_context(cafile=ca)
        sock = ctx.wrap_socket(sock, server_hostname=SERVER_NAME)
    sock.sendall(framed * window)
    answered = 0
    reader = FrameReader()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        data = sock.recv(262144)
        if not data:
            raise SystemExit("the server closed the connection")
        reader.feed(data)
        n = len(reader.take())
        if n:
            answered += n
            sock.sendall(framed * n)
    sock.close()
    print(f"answered {answered} in {seconds:g}s")


def run_load(port: int, tls: bool, ca: str, seconds: float, window: int, cpu: int | None,
             dnsperf: bool) -> float:
    """Queries per second over one pipelined connection."""
    if dnsperf:
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as data:
            data.write(f"{QNAME} A\n")
            data.flush()
            argv = ["dnsperf", "-m", "dot" if tls else "tcp", "-s", LOOPBACK, "-p", str(port), "-d", data.name,
                    "-c", "1", "-q", str(window), "-l", f"{seconds:g}"]
            out = _run(argv, cpu, seconds)
        lost = re.search(r"Queries lost:\s+(\d+)", out)
        if lost is None or int(lost.group(1)) or "NOERROR" not in out:
            raise SystemExit(f"dnsperf saw lost queries or errors:\n{out}")
        return float(_found(r"Queries per second:\s+([\d.]+)", out))
    argv = [sys.executable, __file__, "--client", str(port), "--tls" if tls else "--tcp", ca, f"{seconds:g}",
            str(window)]
    out = _run(argv, cpu, seconds)
    return int(_found(r"answered (\d+)", out)) / seconds


def _found(pattern: str, out: str) -> str:
    """The first group of ``pattern`` in a load generator's output."""
    match = re.search(pattern, out)
    if match is None:
        raise SystemExit(f"no {pattern!r} in the load generator's output:\n{out}")
    return match.group(1)


def _run(argv: list[str], cpu: int | None, seconds: float) -> str:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=pinned(cpu))
    try:
        out, _ = proc.communicate(timeout=seconds + 30)
    finally:
        stop_process(proc)
    if proc.returncode:
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}):\n{out.decode(errors='replace')}")
    return out.decode(errors="replace")


# --- the benchmark -------------------------------------------------------------------------------


def corefile(pki: Path, tls_port: int, tcp_port: int) -> str:
    hosts = f"    hosts {{\n        192.0.2.1 {QNAME}\n    }}\n"
    return (f"tls://bench.example:{tls_port} {{\n    bind {LOOPBACK}\n"
            f"    tls {pki}/server.crt {pki}/server.key\n{hosts}}}\n"
            f"bench.example:{tcp_port} {{\n    bind {LOOPBACK}\n{hosts}}}\n")


def client_main(argv: list[str]) -> int:
    """``--client PORT --tls|--tcp CA SECONDS WINDOW``: the built-in load generator, in its own process."""
    port, mode, ca, seconds, window = argv
    client(int(port), mode == "--tls", ca, float(seconds), int(window))
    return 0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        return client_main(sys.argv[2:7])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=4.0, help="length of one round (default 4)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per transport (default 3)")
    p.add_argument("--window", type=int, default=64, help="queries in flight on the connection (default 64)")
    p.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto", help="interkube's event loop")
    p.add_argument("--generator", choices=("auto", "dnsperf", "builtin"), default="auto",
                   help="load generator: dnsperf when installed (auto), or the built-in client")
    args = p.parse_args()
    use_dnsperf = args.generator == "dnsperf" or (args.generator == "auto" and shutil.which("dnsperf") is not None)
    if args.generator == "dnsperf" and shutil.which("dnsperf") is None:
        raise SystemExit("dnsperf is not installed (Debian package dnsperf)")

    from interkube.tlsutil import certs

    cores = cpus()
    server_cpu, load_cpu = cores if cores else (None, None)
    if cores is None:
        print("note: one core only; server and load generator are not pinned apart", file=sys.stderr)
    generator = "dnsperf" if use_dnsperf else "built-in Python client"
    with tempfile.TemporaryDirectory(prefix="interkube-bench-tls-") as tmp:
        pki = Path(tmp)
        ca = certs.create_ca("bench CA")
        ca.save(pki / "ca.crt", pki / "ca.key")
        certs.issue(ca, SERVER_NAME, dns_names=[SERVER_NAME], ip_addresses=[LOOPBACK]).save(
            pki / "server.crt", pki / "server.key")
        tls_port, tcp_port = free_port(), free_port()
        (pki / "Corefile").write_text(corefile(pki, tls_port, tcp_port))
        server = subprocess.Popen([sys.executable, "-m", "interkube", "serve", "-quiet", "--loop", args.loop,
                                   "-conf", str(pki / "Corefile")], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, preexec_fn=pinned(server_cpu))
        try:
            wait_listening(tls_port, timeout=20, proc=server)
            wait_listening(tcp_port, timeout=20, proc=server)
            results: dict[str, list[tuple[float, float]]] = {"tcp": [], "tls": []}
            for _ in range(args.rounds):
                for name, port in (("tcp", tcp_port), ("tls", tls_port)):
                    busy0, t0 = cpu_seconds(server.pid), time.monotonic()
                    qps = run_load(port, name == "tls", str(pki / "ca.crt"), args.seconds, args.window, load_cpu,
                                   use_dnsperf)
                    busy = (cpu_seconds(server.pid) - busy0) / (time.monotonic() - t0)
                    results[name].append((qps, busy))
        finally:
            stop_process(server)
    print(f"interkube {args.loop} loop, server on cpu {server_cpu}, load on cpu {load_cpu}; "
          f"one connection, {args.window} queries in flight; {args.rounds} x {args.seconds:g}s rounds; "
          f"load generator: {generator}")
    print(f"{'transport':<10}{'median QPS':>12}{'best QPS':>12}   server CPU per round")
    medians = {}
    for name, rounds in results.items():
        round_qps = [q for q, _ in rounds]
        medians[name] = statistics.median(round_qps)
        cpu = " ".join(f"{b:.0%}" for _, b in rounds)
        print(f"{name.upper():<10}{medians[name]:>12,.0f}{max(round_qps):>12,.0f}   {cpu}")
    print(f"ratio TLS/TCP (medians): {medians['tls'] / medians['tcp']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

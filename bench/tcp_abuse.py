"""Abusive TCP and TLS clients against a legitimate one (issue 19, sections 1 to 3).

    python bench/tcp_abuse.py [--seconds 10] [--trickle 1024] [--slowloris 50] [--silent-tls 2000] [--reconnect]

Each phase starts a fresh `interkube serve` pinned to one core (the clients run on another), with
a plain block forwarding to a fake upstream and a DNS-over-TLS block in front of the same:

  baseline     no attack;
  trickle      TRICKLE connections from 127.0.0.1, each trickling ~400 B/s into a message that
               never ends;
  slowloris    SLOWLORIS connections sending one byte every 2 s;
  silent-tls   SILENT_TLS connections to the DoT port that never send a ClientHello;
  idle-fd      the server's open-files limit 1024 and not raisable (soft = hard, as systemd's
               default for a service), 1,100 idle TCP connections.

With --reconnect each abusive client opens a new connection as soon as the server closes one
(then the server's core is busy accepting and closing: a connection flood rather than held
slots). The legitimate client, from 127.0.0.2, asks one query every 0.2 s during the phase: on a new TCP
connection (a new TLS connection in silent-tls; over UDP, forwarded, in idle-fd). Printed per
phase: its answered/asked and p50/p99 latency, the attack connections open at the end (how many
slots the attacker still held), and the server's closed-connection counters from /metrics.

To compare two versions on the same machine, run the script once per version (PYTHONPATH=...).
The idle-fd phase passes `-tcp.max-per-client 0` where the server has that flag, so that the cap
alone has to keep the descriptors' reserve. Bounded: about 5 x (SECONDS + 5) s. Loopback only;
every process started here is stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dns.message
import dns.query
import dns.rcode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testkit.dot import SERVER_NAME, issued
from testkit.fakeupstream import FakeUpstream
from testkit.processes import stop_process
from testkit.servers import LOOPBACK, free_port, wait_for_dns, wait_listening

LEGIT = "127.0.0.2"
NAME = "www.example.org."
PROBE_INTERVAL = 0.2


@dataclass
class Phase:
    name: str
    asked: int = 0
    answered: int = 0
    latencies: list[float] = field(default_factory=list)
    attack_open: int = 0
    attack_opened: int = 0
    closed: dict[str, float] = field(default_factory=dict)


def cpus() -> tuple[int | None, int | None]:
    mine = sorted(os.sched_getaffinity(0))
    return (mine[0], mine[1]) if len(mine) >= 2 else (None, None)


def has_flag(flag: str) -> bool:
    out = subprocess.run([sys.executable, "-m", "interkube", "serve", "--help"], capture_output=True,
                         text=True, timeout=60).stdout
    return flag in out


@contextlib.contextmanager
def server(tmp: Path, upstream: str, *, nofile: int | None, args: tuple[str, ...],
           cpu: int | None) -> Iterator[tuple[int, int, int]]:
    """An interkube process: (dns port, tls port, metrics port)."""
    port, tls_port, http = free_port(), free_port(), free_port()
    pki = issued()
    pki["server"].save(tmp / "server.crt", tmp / "server.key")
    (tmp / "Corefile").write_text(
        f"example.org:{port} {{\n bind {LOOPBACK}\n prometheus {LOOPBACK}:{http}\n forward . {upstream}\n}}\n"
        f"tls://example.org:{tls_port} {{\n bind {LOOPBACK}\n tls {tmp / 'server.crt'} {tmp / 'server.key'}\n"
        f" forward . {upstream}\n}}\n")

    def limits() -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    proc = subprocess.Popen([sys.executable, "-m", "interkube", "serve", "-conf", str(tmp / "Corefile"), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=limits)
    try:
        wait_for_dns(port, proc=proc)
        wait_listening(tls_port, proc=proc)
        yield port, tls_port, http
    finally:
        stop_process(proc)


def probe(how: str, port: int, seconds: float, cafile: str) -> dict[str, object]:
    """The legitimate client, in a process of its own (so that the attackers' event loop does not
    delay it): one query every PROBE_INTERVAL for ``seconds``."""
    ctx = ssl.create_default_context(cafile=cafile)
    asked, latencies = 0, []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        q = dns.message.make_query(NAME, "A")
        asked += 1
        started = time.perf_counter()
        try:
            if how == "udp":
                r = dns.query.udp(q, LOOPBACK, port=port, source=LEGIT, timeout=2)
            elif how == "tls":
                r = dns.query.tls(q, LOOPBACK, port=port, source=LEGIT, timeout=2, ssl_context=ctx,
                                  server_hostname=SERVER_NAME)
            else:
                r = dns.query.tcp(q, LOOPBACK, port=port, source=LEGIT, timeout=2)
            if r.rcode() == dns.rcode.NOERROR and r.answer:
                latencies.append(time.perf_counter() - started)
        except Exception:  # any failure is a failed probe, counted as such
            pass
        time.sleep(PROBE_INTERVAL)  # the client's pace
    return {"asked": asked, "latencies": latencies}


async def run_probe(phase: Phase, how: str, port: int, seconds: float, cafile: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--probe", f"{how}:{port}:{seconds}:{cafile}", stdout=subprocess.PIPE)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), seconds + 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    result = json.loads(out)
    phase.asked = result["asked"]
    phase.latencies = result["latencies"]
    phase.answered = len(phase.latencies)


async def attacker(phase: Phase, port: int, until: float, first: bytes, chunk: bytes, interval: float,
                   held: set[object], reconnect: bool) -> None:
    """An abusive connection: it sends ``first``, then ``chunk`` every ``interval``, until the
    server closes it (then, with ``reconnect``, the next one) or the phase ends."""
    loop = asyncio.get_running_loop()
    first_time = True
    while loop.time() < until and (first_time or reconnect):
        first_time = False
        try:
            reader, writer = await asyncio.open_connection(LOOPBACK, port)
        except OSError:
            await asyncio.sleep(interval)  # the attacker's pace
            continue
        phase.attack_opened += 1
        me = object()
        held.add(me)
        eof = asyncio.ensure_future(reader.read())
        try:
            data = first
            while loop.time() < until and not eof.done():
                if data:
                    writer.write(data)
                    await writer.drain()
                await asyncio.wait([eof], timeout=max(0.0, min(interval, until - loop.time())))
                data = chunk
        except ConnectionError:
            pass
        finally:
            if eof.done():
                held.discard(me)  # the server closed it
            else:
                eof.cancel()
            writer.close()


def closed_counters(http: int) -> dict[str, float]:
    try:
        text = urllib.request.urlopen(f"http://{LOOPBACK}:{http}/metrics", timeout=5).read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("interkube_tcp_connections_closed_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            out[reason] = out.get(reason, 0) + float(line.rsplit(" ", 1)[1])
    return out


@contextlib.asynccontextmanager
async def upstream() -> AsyncIterator[FakeUpstream]:
    up = await FakeUpstream().start()
    up.behaviour.records = {(NAME, "A"): ["192.0.2.1"]}
    try:
        yield up
    finally:
        await up.stop()


async def run_phase(name: str, seconds: float, args: argparse.Namespace, srv_cpu: int | None,
                    cafile: str) -> Phase:
    phase = Phase(name)
    extra: tuple[str, ...] = ()
    nofile = None
    if name == "idle-fd":
        nofile = 1024
        if has_flag("-tcp.max-per-client"):
            extra = ("-tcp.max-per-client", "0")
    async with upstream() as up:
        with tempfile.TemporaryDirectory(prefix="interkube-abuse-") as tmp, \
                server(Path(tmp), up.address, nofile=nofile, args=extra, cpu=srv_cpu) as (port, tls_port, http):
            loop = asyncio.get_running_loop()
            held: set[object] = set()
            tasks = []
            idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
            if name == "idle-fd":
                for _ in range(1100):
                    with contextlib.suppress(OSError):
                        idle.append(await asyncio.open_connection(LOOPBACK, port))
            until = loop.time() + seconds
            kinds = {  # port, first bytes, then bytes every interval, connections
                "trickle": (port, b"\xff\xff", bytes(400), 1.0, args.trickle),
                "slowloris": (port, b"\x01", b"\x00", 2.0, args.slowloris),
                "silent-tls": (tls_port, b"", b"", 1.0, args.silent_tls),
            }
            if name in kinds:
                to, first, chunk, every, count = kinds[name]
                tasks = [attacker(phase, to, until, first, chunk, every, held, args.reconnect) for _ in range(count)]
            how = {"silent-tls": "tls", "idle-fd": "udp"}.get(name, "tcp")
            probe_port = tls_port if how == "tls" else port
            running = [asyncio.ensure_future(t) for t in tasks]
            # Let the attack take hold before the legitimate client comes.
            if running:
                await asyncio.sleep(min(2.0, seconds / 4))
            await run_probe(phase, how, probe_port, until - loop.time(), cafile)
            phase.attack_open = len(held) + sum(1 for r, _ in idle if not r.at_eof())
            phase.closed = closed_counters(http)
            await asyncio.gather(*running, return_exceptions=True)  # each ends by itself at ``until``
            for _, w in idle:
                w.close()
    return phase


def report(phases: list[Phase]) -> None:
    print(f"{'phase':<11} {'answered':>11} {'p50 ms':>8} {'p99 ms':>8} {'attack open':>12} "
          f"{'attack conns':>13}  closed by the server (from /metrics)")
    for p in phases:
        lat = sorted(p.latencies)
        p50 = f"{statistics.median(lat) * 1000:.1f}" if lat else "-"
        p99 = f"{lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000:.1f}" if lat else "-"
        closed = ", ".join(f"{k} {int(v)}" for k, v in sorted(p.closed.items())) or "-"
        print(f"{p.name:<11} {p.answered:>5}/{p.asked:<5} {p50:>8} {p99:>8} {p.attack_open:>12} "
              f"{p.attack_opened:>13}  {closed}")


async def main_async(args: argparse.Namespace) -> None:
    srv_cpu, load_cpu = cpus()
    if load_cpu is not None:
        os.sched_setaffinity(0, {load_cpu})
    pki_dir = Path(tempfile.mkdtemp(prefix="interkube-abuse-ca-"))
    issued()["ca"].save(pki_dir / "ca.crt", pki_dir / "ca.key")
    phases = []
    for name in args.phases.split(","):
        phases.append(await run_phase(name, args.seconds, args, srv_cpu, str(pki_dir / "ca.crt")))
        print(f"  {name}: done", file=sys.stderr)
    report(phases)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each phase (default 10)")
    ap.add_argument("--trickle", type=int, default=1024, help="trickling connections (default 1024)")
    ap.add_argument("--slowloris", type=int, default=50, help="slowloris connections (default 50)")
    ap.add_argument("--silent-tls", type=int, default=2000, help="silent TLS connections (default 2000)")
    ap.add_argument("--phases", default="baseline,trickle,slowloris,silent-tls,idle-fd")
    ap.add_argument("--reconnect", action="store_true", help="abusive clients reconnect when closed")
    ap.add_argument("--probe", help=argparse.SUPPRESS)  # HOW:PORT:SECONDS:CAFILE, the probe process
    args = ap.parse_args()
    if args.probe:
        how, port, seconds, cafile = args.probe.split(":", 3)
        print(json.dumps(probe(how, int(port), float(seconds), cafile)))
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192 if hard == resource.RLIM_INFINITY else min(hard, 8192)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()

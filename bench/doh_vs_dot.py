"""DNS over HTTPS against DNS over TLS: QPS over ONE connection each, in the same run.

    python bench/doh_vs_dot.py [--seconds 4] [--rounds 3] [--window 64] [--no-coredns]

One `interkube serve` answers the same name from memory (the hosts plugin) on an `https://`
block (HTTP/2, every query a stream of one connection) and a `tls://` block (pipelined DoT on
one connection); it is pinned to one core, the load generator to the other. The load generator
keeps WINDOW queries in flight on one connection for SECONDS, the same kind of client for both:
a raw HTTP/2 client for DoH (POST, a new stream as each answer ends; see doh_client) and the
pipelined DoT client of bench/tls_pipelining.py. Not dnsperf: its DoH mode keeps one answer per
read of the connection, so it loses answers that a server writes together (interkube writes the
answers of one event-loop pass at once; dnsperf -m doh -q 4 completed 1 query in 5). CoreDNS 1.15
(when built: scripts/build-peers) serves the same two blocks and is measured in the same run,
pinned alike, as the reference for the ratio. Rounds
alternate the transports so that drift hits both alike; the figure per transport is the median
round (the best beside it), with the ratio DoH/DoT, and the server's CPU per round (near 100%:
the server, not the load generator, was the limit).

Bounded in time: about servers x ROUNDS x 2 x (SECONDS + 1) seconds plus start-up. Every
process started here is stopped by its PID.
"""

from __future__ import annotations

import argparse
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

from bench.tls_pipelining import QNAME, SERVER_NAME, _found, _run, cpu_seconds, cpus, pinned
from bench.tls_pipelining import run_load as run_dot_load
from testkit.peers import find_peer, free_udp_tcp_port
from testkit.processes import stop_process
from testkit.servers import LOOPBACK, free_port, wait_listening

# --- the DoH load generator -----------------------------------------------------------------------


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    """One HTTP/2 frame (RFC 9113 section 4.1)."""
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream.to_bytes(4, "big") + payload


def _literal(name: bytes, value: bytes) -> bytes:
    """An HPACK literal header field without indexing, new name (RFC 7541 section 6.2.2): the
    same bytes on every request, since it leaves the dynamic table alone."""
    return b"\x00" + bytes((len(name),)) + name + bytes((len(value),)) + value


DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY = 0, 1, 3, 4, 6, 7
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def doh_client(port: int, ca: str, seconds: float, window: int) -> int:
    """Keep ``window`` POST queries in flight as streams of ONE HTTP/2 connection for ``seconds``
    (a new stream as each answer ends); the number answered.

    Raw frames with a header block encoded once (literals that leave HPACK's dynamic table
    alone): a Python HTTP/2 library costs a millisecond per request here, which would measure
    the client. Every answer's DNS header is checked (a response, NOERROR); a reset stream, a
    GOAWAY or headers that end a stream without a body stop the run.
    """
    body = dns.message.make_query(QNAME, "A").to_wire()
    sock = socket.create_connection((LOOPBACK, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(["h2"])
    tls = ctx.wrap_socket(sock, server_hostname=SERVER_NAME)
    if tls.selected_alpn_protocol() != "h2":
        raise SystemExit(f"the server did not agree to HTTP/2 (ALPN {tls.selected_alpn_protocol()!r})")
    block = (b"\x83\x87"  # :method POST, :scheme https (static table entries 3 and 7)
             + _literal(b":path", b"/dns-query") + _literal(b":authority", f"{SERVER_NAME}:{port}".encode())
             + _literal(b"content-type", b"application/dns-message")
             + _literal(b"content-length", str(len(body)).encode()))
    # The preface, our settings (no push; 16 MiB stream windows) and a 1 GiB connection window:
    # this client's flow control never holds the server back.
    settings = (2).to_bytes(2, "big") + (0).to_bytes(4, "big") + (4).to_bytes(2, "big") + (1 << 24).to_bytes(4, "big")
    out = [b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", _frame(SETTINGS, 0, 0, settings),
           _frame(8, 0, 0, (1 << 30).to_bytes(4, "big"))]
    next_stream = 1

    def ask() -> None:
        nonlocal next_stream
        out.append(_frame(HEADERS, END_HEADERS, next_stream, block) + _frame(DATA, END_STREAM, next_stream, body))
        next_stream += 2

    for _ in range(window):
        ask()
    tls.sendall(b"".join(out))
    out.clear()
    answered = 0
    buf = b""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        data = tls.recv(262144)
        if not data:
            raise SystemExit("the server closed the connection")
        buf += data
        pos = 0
        while len(buf) - pos >= 9:
            length = int.from_bytes(buf[pos:pos + 3], "big")
            if len(buf) - pos - 9 < length:
                break
            kind, flags = buf[pos + 3], buf[pos + 4]
            payload = buf[pos + 9:pos + 9 + length]
            pos += 9 + length
            if kind == DATA and flags & END_STREAM:
                if len(payload) < 12 or not payload[2] & 0x80 or payload[3] & 0x0F:
                    raise SystemExit(f"not a NOERROR DNS answer: {payload[:12].hex()}")
                answered += 1
                ask()
            elif kind == HEADERS and flags & END_STREAM:
                raise SystemExit("a response without a body (an HTTP error status)")
            elif kind == SETTINGS and not flags & ACK:
                out.append(_frame(SETTINGS, ACK, 0, b""))
            elif kind == PING and not flags & ACK:
                out.append(_frame(PING, ACK, 0, payload))
            elif kind in (RST_STREAM, GOAWAY):
                raise SystemExit(f"the server sent {'RST_STREAM' if kind == RST_STREAM else 'GOAWAY'}")
        buf = buf[pos:]
        if out:
            tls.sendall(b"".join(out))
            out.clear()
    tls.close()
    return answered


def client_main(argv: list[str]) -> int:
    """``--doh-client PORT CA SECONDS WINDOW``: the DoH load generator, in its own (pinned) process."""
    port, ca, seconds, window = argv
    print(f"answered {doh_client(int(port), ca, float(seconds), int(window))} in {seconds}s")
    return 0


def run_doh_load(port: int, ca: str, seconds: float, window: int, cpu: int | None) -> float:
    """Queries per second over one HTTP/2 connection."""
    argv = [sys.executable, __file__, "--doh-client", str(port), ca, f"{seconds:g}", str(window)]
    out = _run(argv, cpu, seconds)
    return int(_found(r"answered (\d+)", out)) / seconds


# --- the benchmark -------------------------------------------------------------------------------


def corefile(pki: Path, doh_port: int, dot_port: int, dns_port: int | None = None) -> str:
    """The same two blocks for interkube and CoreDNS (CoreDNS also gets a plain block on its
    -dns.port, which nothing here queries)."""
    hosts = f"    hosts {{\n        192.0.2.1 {QNAME}\n    }}\n"
    tls = f"    tls {pki}/server.crt {pki}/server.key\n"
    text = (f"https://bench.example:{doh_port} {{\n    bind {LOOPBACK}\n{tls}{hosts}}}\n"
            f"tls://bench.example:{dot_port} {{\n    bind {LOOPBACK}\n{tls}{hosts}}}\n")
    if dns_port is not None:
        text += f"bench.example:{dns_port} {{\n    bind {LOOPBACK}\n{hosts}}}\n"
    return text


def measure(argv: list[str], pki: Path, doh_port: int, dot_port: int, args: argparse.Namespace,
            cores: tuple[int | None, int | None]) -> dict[str, list[tuple[float, float]]]:
    server_cpu, load_cpu = cores
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pinned(server_cpu))
    results: dict[str, list[tuple[float, float]]] = {"doh": [], "dot": []}
    try:
        wait_listening(doh_port, timeout=20, proc=server)
        wait_listening(dot_port, timeout=20, proc=server)
        for _ in range(args.rounds):
            for transport in ("dot", "doh"):
                busy0, t0 = cpu_seconds(server.pid), time.monotonic()
                if transport == "doh":
                    qps = run_doh_load(doh_port, str(pki / "ca.crt"), args.seconds, args.window, load_cpu)
                else:
                    qps = run_dot_load(dot_port, True, str(pki / "ca.crt"), args.seconds, args.window, load_cpu,
                                       dnsperf=False)
                busy = (cpu_seconds(server.pid) - busy0) / (time.monotonic() - t0)
                results[transport].append((qps, busy))
    finally:
        stop_process(server)
    return results


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--doh-client":
        return client_main(sys.argv[2:6])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=4.0, help="length of one round (default 4)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per transport and server (default 3)")
    p.add_argument("--window", type=int, default=64, help="queries in flight on the connection (default 64)")
    p.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto", help="interkube's event loop")
    p.add_argument("--no-coredns", action="store_true", help="measure interkube alone")
    args = p.parse_args()

    from interkube.tlsutil import certs

    found = cpus()
    cores: tuple[int | None, int | None] = found if found else (None, None)
    if found is None:
        print("note: one core only; server and load generator are not pinned apart", file=sys.stderr)
    coredns = None if args.no_coredns else find_peer("coredns")
    runs: dict[str, dict[str, list[tuple[float, float]]]] = {}
    with tempfile.TemporaryDirectory(prefix="interkube-bench-doh-") as tmp:
        pki = Path(tmp)
        ca = certs.create_ca("bench CA")
        ca.save(pki / "ca.crt", pki / "ca.key")
        certs.issue(ca, SERVER_NAME, dns_names=[SERVER_NAME], ip_addresses=[LOOPBACK]).save(
            pki / "server.crt", pki / "server.key")
        doh_port, dot_port = free_port(), free_port()
        (pki / "Corefile").write_text(corefile(pki, doh_port, dot_port))
        runs["interkube"] = measure([sys.executable, "-m", "interkube", "serve", "-quiet", "--loop",
                                                  args.loop, "-conf", str(pki / "Corefile")],
                                    pki, doh_port, dot_port, args, cores)
        if coredns is not None:
            doh_port, dot_port, dns_port = free_port(), free_port(), free_udp_tcp_port()
            (pki / "Corefile.coredns").write_text(corefile(pki, doh_port, dot_port, dns_port))
            runs["CoreDNS"] = measure([str(coredns), "-quiet", "-conf", str(pki / "Corefile.coredns"),
                                                  "-dns.port", str(dns_port)],
                                      pki, doh_port, dot_port, args, cores)
    generator = "raw HTTP/2 client (DoH), tls_pipelining's client (DoT), in Python"
    print(f"server on cpu {cores[0]}, load on cpu {cores[1]}; ONE connection per run, {args.window} queries "
          f"in flight; {args.rounds} x {args.seconds:g}s rounds; load generator: {generator}")
    print(f"{'server':<11}{'transport':<10}{'median QPS':>12}{'best QPS':>12}   server CPU per round")
    ratios = {}
    for server, results in runs.items():
        medians = {}
        for transport, rounds in results.items():
            qps = [q for q, _ in rounds]
            medians[transport] = statistics.median(qps)
            cpu = " ".join(f"{b:.0%}" for _, b in rounds)
            print(f"{server:<11}{transport.upper():<10}{medians[transport]:>12,.0f}{max(qps):>12,.0f}   {cpu}")
        ratios[server] = medians["doh"] / medians["dot"]
    for server, ratio in ratios.items():
        print(f"{server}: DoH/DoT (medians) {ratio:.2f}")
    if "CoreDNS" in runs:
        ik, cd = runs["interkube"], runs["CoreDNS"]
        doh = statistics.median(q for q, _ in ik["doh"]) / statistics.median(q for q, _ in cd["doh"])
        dot = statistics.median(q for q, _ in ik["dot"]) / statistics.median(q for q, _ in cd["dot"])
        print(f"interkube/CoreDNS, DoH: {doh:.2f}; DoT: {dot:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

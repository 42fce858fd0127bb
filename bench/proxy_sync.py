"""Benchmark: interkube proxy's nftables programming and the data path through a VIP (issue 16).

Run ``python bench/proxy_sync.py`` from the repository root, as root (it makes network
namespaces named ``ikpb-*``, removed at the end). Everything nft does happens inside them.

1. **Full sync**: a cluster of N Services x 3 endpoints (N = 100, 1,000, 10,000) programmed
   from empty, in one transaction: the time of ``Proxy.sync()`` (rules computed, ``nft -f``
   applied). Goal at 10,000: < 2 s.
2. **One change**: then, ``--changes`` times, one EndpointSlice of that cluster gains or loses
   an endpoint (``Cluster.apply``, as a watch event does) and the next sync makes it live: the
   time from the change to nft's return (p50, p99) at each N. Goal: p99 < 100 ms at 10,000,
   and a cost that does not grow with N (printed as the ratio to N = 100). Then, as many times
   in all, a Service deleted or created again (its element and chain go or come): shown beside,
   as the p50 of each (a deletion makes nft 1.0.6 list every chain first: that one grows with N).
3. **Throughput**: a client, a gateway running ``interkube proxy`` and a pod namespace; TCP
   bulk transfers of ``--megabytes`` each, to the VIP and straight to the pod address (both
   through the gateway), in ``--rounds`` pairs (alternating which goes first): median
   throughput of each and the median of the pairs' ratios. Goal: VIP >= 0.95x direct.

The machine's other load moves every figure: the ratios (against N = 100, against the direct
path) are measured in the same run and are what to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from interkube.kube.index import ClusterIndex
from interkube.kube.objects import ENDPOINT_SLICES, SERVICES
from interkube.lab.netns import inside
from interkube.proxy.config import ClusterConfig, ProxyConfig
from interkube.proxy.runtime import Proxy, settle_memory
from testkit.fakekube import endpoint_slice, service, write_snapshot
from testkit.netns import Lab, Netns, unavailable
from testkit.waiting import wait_until

REPO = Path(__file__).resolve().parents[1]
GOAL_FULL_S = 2.0
GOAL_P99_MS = 100.0
GOAL_THROUGHPUT = 0.95
SIZES = (100, 1_000, 10_000)


def vip(n: int) -> str:
    return f"10.96.{n // 250}.{n % 250 + 1}"


def slice_obj(n: int, endpoints: int) -> dict[str, object]:
    eps = [{"ip": f"10.{1 + k}.{n // 250}.{n % 250 + 1}"} for k in range(endpoints)]
    return endpoint_slice("default", f"svc{n}-a", f"svc{n}", eps, ports=(("http", 8080, "TCP"),))


def index_of(services: int) -> ClusterIndex:
    index = ClusterIndex()
    for n in range(services):
        svc = SERVICES.from_dict(service("default", f"svc{n}", cluster_ips=(vip(n),))).record
        sl = ENDPOINT_SLICES.from_dict(slice_obj(n, 3)).record
        assert svc is not None and sl is not None
        index.put("services", ("default", f"svc{n}"), svc)
        index.put("endpointslices", ("default", f"svc{n}-a"), sl)
    return index


async def programming(services: int, changes: int) -> tuple[float, float, list[float], list[float]]:
    """(full sync seconds, of which in nft, one-endpoint-change seconds each, Service deleted or
    created seconds each) for ``services`` Services."""
    config = ProxyConfig("bench", (ClusterConfig("bench", "bench:1", snapshot=("/nonexistent",)),))
    proxy = Proxy(config)
    state = proxy.clusters["bench"]
    state.cluster.subscribe(proxy._listener(state))
    state.cluster.preload(index_of(services))
    state.dirty = None
    start = time.perf_counter()
    assert await proxy.sync()
    full = time.perf_counter() - start
    in_nft = float(proxy.last_sync["nft_seconds"])
    settle_memory()  # as the process does after a full sync (the rules are live before)
    assert state.services[4] == services, state.services
    each = []
    endpoints = dict.fromkeys(range(services), 3)
    for i in range(changes):
        n = (i * 7919) % services
        # 3 endpoints become 2 and 2 become 3: every change is one (a Service met again with the
        # count it has would cost no transaction and pull the figures down).
        endpoints[n] = 5 - endpoints[n]
        record = ENDPOINT_SLICES.from_dict(slice_obj(n, endpoints[n])).record
        start = time.perf_counter()
        state.cluster.apply("endpointslices", ("default", f"svc{n}-a"), record)
        assert await proxy.sync()
        each.append(time.perf_counter() - start)
    whole = []
    for i in range(changes):
        n = (i // 2 * 7919 + 1) % services
        svc = SERVICES.from_dict(service("default", f"svc{n}", cluster_ips=(vip(n),))).record if i % 2 else None
        start = time.perf_counter()
        state.cluster.apply("services", ("default", f"svc{n}"), svc)
        assert await proxy.sync()
        whole.append(time.perf_counter() - start)
    assert state.services[4] == services, state.services
    proxy.remove_tables()
    return full, in_nft, each, whole


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


# --- throughput ------------------------------------------------------------------------------------

SINK = """
import socket, sys
srv = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
while True:
    conn, _ = srv.accept()
    total = 0
    while data := conn.recv(1 << 20):
        total += len(data)
    conn.sendall(str(total).encode())
    conn.close()
"""


def transfer(client: Netns, address: str, megabytes: int) -> float:
    """Bytes per second of one bulk TCP transfer (until the sink has counted every byte)."""
    chunk = b"x" * (1 << 20)
    sock = client.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(60)
    with sock:
        sock.connect((address, 9000))
        start = time.perf_counter()
        for _ in range(megabytes):
            sock.sendall(chunk)
        sock.shutdown(socket.SHUT_WR)
        got = int(sock.recv(64))
        elapsed = time.perf_counter() - start
    assert got == megabytes << 20
    return got / elapsed


def throughput(lab: Lab, tmp: Path, megabytes: int, rounds: int) -> tuple[float, float, float]:
    client, gateway, pods = lab.netns("cli"), lab.netns("gw"), lab.netns("pod")
    lab.link(client, gateway, ["10.250.0.2/24"], ["10.250.0.1/24"])
    lab.link(gateway, pods, ["10.251.0.1/24"], ["10.251.0.2/24"])
    gateway.sysctl("net.ipv4.ip_forward", "1")
    client.ip("route", "add", "10.0.0.0/8", "via", "10.250.0.1")
    gateway.ip("route", "add", "10.1.0.0/16", "via", "10.251.0.2")
    pods.ip("route", "add", "default", "via", "10.251.0.1")
    pods.ip("addr", "add", "10.1.0.5/32", "dev", "lo")
    sink = pods.start([sys.executable, "-c", SINK, "10.1.0.5", "9000"], stdout=subprocess.PIPE)
    assert sink.stdout is not None and sink.stdout.readline().strip() == b"ready"
    snap = write_snapshot(tmp / "tp.yaml", [
        service("default", "bulk", cluster_ips=("10.96.0.50",), ports=(("data", 9000, "TCP"),)),
        endpoint_slice("default", "bulk-a", "bulk", [{"ip": "10.1.0.5"}], ports=(("data", 9000, "TCP"),))])
    conf = tmp / "tp.conf"
    conf.write_text(f"proxy {{\n    cluster a {{\n        snapshot {snap}\n    }}\n}}\n")
    env = {"PYTHONPATH": f"{REPO / 'src'}:{REPO}", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    gateway.start([sys.executable, "-m", "interkube", "proxy", "-conf", str(conf)], env=env,
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: "10.96.0.50" in gateway.run("nft", "list", "table", "ip", "interkube", check=False).stdout,
               "the proxy's table", timeout=60)
    via_vip: list[float] = []
    direct: list[float] = []
    ratios: list[float] = []
    transfer(client, "10.96.0.50", 8)  # warm up both paths
    transfer(client, "10.1.0.5", 8)
    for i in range(rounds):
        # Paired and in alternating order, so that a burst of load elsewhere hits both sides.
        order = [("10.96.0.50", via_vip), ("10.1.0.5", direct)][:: 1 if i % 2 == 0 else -1]
        for address, results in order:
            results.append(transfer(client, address, megabytes))
        ratios.append(via_vip[-1] / direct[-1])
    return statistics.median(via_vip), statistics.median(direct), statistics.median(ratios)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=200, help="one-endpoint changes per size (default 200)")
    parser.add_argument("--megabytes", type=int, default=200, help="size of each bulk transfer (default 200)")
    parser.add_argument("--rounds", type=int, default=9, help="transfer pairs (default 9)")
    parser.add_argument("--throughput", action=argparse.BooleanOptionalAction, default=True,
                        help="measure throughput through the VIP (default: yes)")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="Service counts (default 100,1000,10000)")
    args = parser.parse_args()
    why = unavailable()
    if why:
        print(f"proxy_sync: {why}", file=sys.stderr)
        return 2
    sizes = [int(s) for s in args.sizes.split(",")]
    with Lab(prefix="ikpb") as lab, tempfile.TemporaryDirectory() as tmp:
        ns = lab.netns("nft")
        results: dict[int, tuple[float, float, list[float], list[float]]] = {}
        with inside(ns.name):  # nft runs in the namespace: it is forked from this thread
            for size in sizes:
                results[size] = asyncio.run(programming(size, args.changes))
        print(f"{'services':>9} {'full sync':>10} {'in nft':>8} {'change p50':>11} {'change p99':>11} "
              f"{'p50 vs first':>13} {'svc deleted p50':>16} {'created p50':>12}")
        base = statistics.median(results[sizes[0]][2])
        for size in sizes:
            full, in_nft, each, whole = results[size]
            med = statistics.median(each)
            print(f"{size:>9} {full:>9.3f}s {in_nft:>7.3f}s {med * 1000:>9.1f}ms {p99(each) * 1000:>9.1f}ms "
                  f"{med / base:>12.2f}x {statistics.median(whole[0::2]) * 1000:>14.1f}ms "
                  f"{statistics.median(whole[1::2]) * 1000:>10.1f}ms")
        largest = sizes[-1]
        full, _, each, _ = results[largest]
        print(f"full sync of {largest} Services x 3 endpoints: {full:.2f} s (goal < {GOAL_FULL_S:g} s): "
              f"{'met' if full < GOAL_FULL_S else 'short'}")
        print(f"p99 change to live at {largest}: {p99(each) * 1000:.1f} ms (goal < {GOAL_P99_MS:g} ms): "
              f"{'met' if p99(each) * 1000 < GOAL_P99_MS else 'short'}")
        if not args.throughput:
            return 0
        vip_bps, direct_bps, ratio = throughput(lab, Path(tmp), args.megabytes, args.rounds)
        print(f"throughput (medians): VIP {vip_bps * 8 / 1e9:.2f} Gbit/s, direct {direct_bps * 8 / 1e9:.2f} Gbit/s; "
              f"median of paired ratios {ratio:.3f} (goal >= {GOAL_THROUGHPUT}): "
              f"{'met' if ratio >= GOAL_THROUGHPUT else 'short'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""interkube proxy in namespaces: real connections through the VIPs of remote clusters.

Every test runs the proxy as a process in the gateway namespace (``ip netns exec``) from snapshot
files, and talks TCP and UDP from the client namespace to servers in the clusters' namespaces.
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
from collections import Counter

import pytest

from testkit.waiting import wait_until

from proxylab import CLIENT_V4, TCP_PORT, UDP_PORT, Topology, greeting, pod, talk, vip, web

pytestmark = pytest.mark.netns


def shares(counts: Counter[str], total: int, backends: list[str]) -> dict[str, float]:
    assert set(counts) == set(backends), counts
    assert sum(counts.values()) == total
    return {b: counts[b] / total for b in backends}


def test_vip_spreads_over_every_backend_tcp_and_udp(topo: Topology) -> None:
    a = topo.cluster("a")
    topo.start_proxy(topo.conf({"a": web(0, pods=a.pods)}, extra="    http 127.0.0.1:9400\n"))
    topo.wait_endpoints(vip(0, 10), 80, 3)
    tcp = Counter(topo.tcp(vip(0, 10), 80)[0] for _ in range(300))
    # Expected 100 each (binomial sd 8.2): 60..140 fails only on a broken spread.
    for backend, share in shares(tcp, 300, a.pods).items():
        assert 0.2 < share < 0.47, (backend, tcp)
    udp = Counter(topo.udp(vip(0, 10), 53)[0] for _ in range(150))
    for backend, share in shares(udp, 150, a.pods).items():
        assert 0.18 < share < 0.5, (backend, udp)
    # The backend sees the client itself (no masquerading asked) on the target port.
    assert topo.tcp(vip(0, 10), 80)[1:] == [str(TCP_PORT), CLIENT_V4]
    assert topo.udp(vip(0, 10), 53)[1] == str(UDP_PORT)
    # Local clients of the gateway go through the output hook.
    assert topo.tcp(vip(0, 10), 80, ns=topo.gateway)[0] in a.pods


def test_masquerade_and_mark(topo: Topology) -> None:
    a = topo.cluster("a")
    topo.start_proxy(topo.conf({"a": web(0, pods=a.pods[:1])}, extra="    masquerade\n    mark 0x100\n"))
    topo.wait_endpoints(vip(0, 10), 80, 1)
    greeting = topo.tcp(vip(0, 10), 80)
    assert greeting[0] == a.pods[0]
    assert greeting[2] == "10.251.0.1"  # the gateway's address toward the cluster, not the client's
    ruleset = topo.gateway.run("nft", "list", "table", "ip", "interkube").stdout
    assert "meta mark set meta mark | 0x00000100" in ruleset and "masquerade" in ruleset


def test_no_ready_endpoints_rejects(topo: Topology) -> None:
    a = topo.cluster("a")
    objs = web(0, pods=[])
    # Not-ready endpoints do not count either.
    objs[1]["endpoints"] = [{"addresses": [a.pods[0]], "conditions": {"ready": False}}]
    topo.start_proxy(topo.conf({"a": objs}))
    topo.wait_endpoints(vip(0, 10), 80, 0)
    with pytest.raises(ConnectionRefusedError):
        topo.tcp(vip(0, 10), 80)
    with pytest.raises(ConnectionRefusedError):
        topo.udp(vip(0, 10), 53)
    with pytest.raises(ConnectionRefusedError):  # from the gateway itself (output hook)
        topo.tcp(vip(0, 10), 80, ns=topo.gateway)


def test_changes_are_followed_and_a_long_connection_survives_them(topo: Topology) -> None:
    a = topo.cluster("a")
    b = topo.cluster("b")
    # Two more Services, so that deleting one is not the snapshot guard's "most objects gone".
    others = web(0, 30, name="other1") + web(0, 31, name="other2")
    topo.start_proxy(topo.conf({"a": web(0, pods=a.pods) + others, "b": web(1, pods=b.pods[:1])}))
    topo.wait_endpoints(vip(0, 10), 80, 3)
    topo.wait_endpoints(vip(1, 10), 80, 1)
    long = topo.connect(vip(0, 10), 80)
    first = greeting(long)[0]
    assert first in a.pods
    try:
        # Scale to 0: refused, but the established connection goes on.
        topo.snapshot("a", web(0, pods=[]) + others)
        topo.wait_endpoints(vip(0, 10), 80, 0)
        with pytest.raises(ConnectionRefusedError):
            topo.tcp(vip(0, 10), 80)
        assert talk(long, "after-scale-0") == [first, "after-scale-0"]
        # And back, to two pods.
        topo.snapshot("a", web(0, pods=a.pods[1:]) + others)
        topo.wait_endpoints(vip(0, 10), 80, 2)
        assert {topo.tcp(vip(0, 10), 80)[0] for _ in range(40)} == set(a.pods[1:])
        assert talk(long, "after-scale-2") == [first, "after-scale-2"]
        # A new port (and target port): the old one is gone from the table.
        topo.snapshot("a", web(0, pods=a.pods, port=81, target=TCP_PORT + 1) + others)
        topo.wait_endpoints(vip(0, 10), 81, 3)
        topo.wait_endpoints(vip(0, 10), 80, None)
        assert topo.tcp(vip(0, 10), 81)[1] == str(TCP_PORT + 1)
        assert talk(long, "after-port") == [first, "after-port"]
        # Cluster b's Service is untouched by all this.
        assert topo.tcp(vip(1, 10), 80)[0] == b.pods[0]
        # Deleted.
        topo.snapshot("a", others)
        topo.wait_endpoints(vip(0, 10), 81, None)
        assert talk(long, "after-delete") == [first, "after-delete"]
        # A third cluster: the proxy restarts with it (SIGHUP: the process runs again with
        # the new file, and replaces its tables in one transaction).
        c = topo.cluster("c")
        conf = topo.conf({"c": web(2, pods=c.pods)})
        assert topo.proxy is not None
        topo.proxy.send_signal(signal.SIGHUP)
        topo.wait_endpoints(vip(2, 10), 80, 3)
        assert topo.tcp(vip(2, 10), 80)[0] in c.pods
        assert topo.tcp(vip(1, 10), 80)[0] == b.pods[0]
        assert talk(long, "after-third-cluster") == [first, "after-third-cluster"]
        assert conf.exists()
    finally:
        long.close()


def test_client_ip_affinity_sticks(topo: Topology) -> None:
    a = topo.cluster("a")
    topo.start_proxy(topo.conf({"a": web(0, pods=a.pods, affinity=True)}))
    topo.wait_endpoints(vip(0, 10), 80, 3)
    assert topo.programmed(vip(0, 10), 80)["affinity"]  # type: ignore[index]
    reached = {topo.tcp(vip(0, 10), 80)[0] for _ in range(40)}
    assert len(reached) == 1
    # The gateway itself is another client: it may land elsewhere but sticks as well.
    assert len({topo.tcp(vip(0, 10), 80, ns=topo.gateway)[0] for _ in range(20)}) == 1
    # Another pod leaves, then comes back: each time the Service's chain is refilled in a small
    # transaction that names the sets already there (nft must be made to load them: when only a
    # set is added, nothing else in the batch does), and the client keeps its pod.
    (stuck,) = reached
    for pods in ([stuck, *[p for p in a.pods if p != stuck][:1]], a.pods):
        topo.snapshot("a", web(0, pods=pods, affinity=True))
        topo.wait_endpoints(vip(0, 10), 80, len(pods))
        assert "transaction refused" not in topo.logs(), topo.logs()
        assert {topo.tcp(vip(0, 10), 80)[0] for _ in range(20)} == {stuck}


def test_ipv6_and_dual_stack(topo: Topology) -> None:
    a = topo.cluster("a")
    v6_pods = [pod(0, n, True) for n in (1, 2, 3)]
    objs = web(0, pods=a.pods, dual=True, v6_pods=v6_pods)
    objs += web(0, 20, name="only6", pods=[], v6_pods=v6_pods[:2])
    objs[3]["spec"].update(clusterIP=vip(0, 20, True), clusterIPs=[vip(0, 20, True)], ipFamilies=["IPv6"])
    topo.start_proxy(topo.conf({"a": objs}))
    topo.wait_endpoints(vip(0, 10, True), 80, 3)
    topo.wait_endpoints(vip(0, 10), 80, 3)
    assert {topo.tcp(vip(0, 10, True), 80)[0] for _ in range(60)} == set(v6_pods)
    assert {topo.tcp(vip(0, 10), 80)[0] for _ in range(60)} == set(a.pods)
    assert {topo.udp(vip(0, 10, True), 53)[0] for _ in range(60)} == set(v6_pods)
    assert {topo.tcp(vip(0, 20, True), 80)[0] for _ in range(40)} == set(v6_pods[:2])
    assert topo.programmed(vip(0, 20), 80) is None


def test_shutdown_removes_tables_a_crash_leaves_them_and_a_restart_has_no_gap(topo: Topology) -> None:
    a = topo.cluster("a")
    # The kernel here may lack the dummy driver: announce on an interface that exists.
    topo.gateway.ip("link", "add", "ikann0", "type", "veth", "peer", "name", "ikann1")
    conf = topo.conf({"a": web(0, pods=a.pods)}, extra="    announce ikann0\n")
    topo.start_proxy(conf)
    topo.wait_endpoints(vip(0, 10), 80, 3)
    assert {"table ip interkube", "table ip6 interkube"} <= topo.tables()
    assert "10.96.0.0/16" in topo.gateway.run("ip", "addr", "show", "dev", "ikann0").stdout
    assert topo.stop_proxy(signal.SIGTERM) == 0
    assert not any("interkube" in t for t in topo.tables())
    assert "10.96.0.0/16" not in topo.gateway.run("ip", "addr", "show", "dev", "ikann0").stdout

    topo.start_proxy(conf)
    topo.wait_endpoints(vip(0, 10), 80, 3)
    topo.stop_proxy(signal.SIGKILL)
    assert {"table ip interkube", "table ip6 interkube"} <= topo.tables()
    assert topo.tcp(vip(0, 10), 80)[0] in a.pods  # still working without the process

    # Connections opened all through a restart: none fails.
    failures: list[BaseException] = []
    done = threading.Event()
    made = [0]

    def hammer() -> None:
        while not done.is_set():
            try:
                topo.tcp(vip(0, 10), 80)
                made[0] += 1
            except OSError as exc:
                failures.append(exc)

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        before = made[0]
        wait_until(lambda: made[0] > before + 20, "connections before the restart")
        # Changed while no proxy ran: the restart builds the table from what is there now.
        topo.snapshot("a", web(0, pods=a.pods[:2]))
        topo.start_proxy(conf)
        topo.wait_endpoints(vip(0, 10), 80, 2)
        assert "programmed" in topo.proxy_logs[-1].read_text()
        after = made[0]
        wait_until(lambda: made[0] > after + 20, "connections after the restart")
    finally:
        done.set()
        thread.join(30)
    assert failures == []


def test_bad_services_are_skipped_and_counted(topo: Topology) -> None:
    a = topo.cluster("a")
    bad_port = web(0, 11, name="badport", pods=a.pods)
    bad_port[0]["spec"]["ports"][0]["protocol"] = "ICMP"
    outside = web(0, 12, name="outside", pods=a.pods)
    outside[0]["spec"].update(clusterIP="10.200.0.1", clusterIPs=["10.200.0.1"])
    bad_ip = web(0, 13, name="badip", pods=a.pods)
    bad_ip[0]["spec"].update(clusterIP="10.96.0.999", clusterIPs=["10.96.0.999"])
    topo.start_proxy(topo.conf({"a": web(0, pods=a.pods) + bad_port + outside + bad_ip},
                               extra="    http 127.0.0.1:9401\n"))
    topo.wait_endpoints(vip(0, 10), 80, 3)
    assert topo.tcp(vip(0, 10), 80)[0] in a.pods
    assert {e["service"].split(":")[0] for e in topo.status()} == {"a/default/web"}
    metrics = topo.http(9401, "/metrics")[1]
    for reason in ("protocol", "outside service_cidr", "malformed"):
        assert f'interkube_proxy_skipped_services_total{{cluster="a",reason="{reason}"}} 1.0' in metrics, metrics
    assert 'interkube_proxy_services{cluster="a",family="ip"} 2.0' in metrics
    assert 'interkube_proxy_endpoints{cluster="a",family="ip"} 6.0' in metrics


def test_status_lists_what_is_programmed(topo: Topology) -> None:
    a = topo.cluster("a")
    topo.start_proxy(topo.conf({"a": web(0, pods=a.pods[:2])}))
    topo.wait_endpoints(vip(0, 10), 80, 2)
    out = topo.gateway.run(sys.executable, "-m", "interkube", "proxy", "status").stdout
    assert f"ip  {vip(0, 10)}:80/tcp  a/default/web:http  -> {a.pods[0]}:{TCP_PORT} {a.pods[1]}:{TCP_PORT}" in out
    assert f"{vip(0, 10)}:53/udp  a/default/web:dns" in out
    topo.stop_proxy()
    gone = topo.gateway.run(sys.executable, "-m", "interkube", "proxy", "status", check=False)
    assert gone.returncode == 1 and "no interkube tables" in gone.stderr



def test_a_refused_transaction_is_logged_with_its_line_counted_and_repaired(topo: Topology) -> None:
    a = topo.cluster("a")
    topo.start_proxy(topo.conf({"a": web(0, pods=a.pods)}, extra="    http 127.0.0.1:9403\n"))
    topo.wait_endpoints(vip(0, 10), 80, 3)
    # Someone removes the table behind the proxy's back: its next small transaction names chains
    # that are gone, nft refuses it whole, and the proxy rebuilds the table.
    topo.gateway.run("nft", "delete table ip interkube")
    topo.snapshot("a", web(0, pods=a.pods[:1]))
    topo.wait_endpoints(vip(0, 10), 80, 1)
    assert topo.tcp(vip(0, 10), 80)[0] == a.pods[0]
    logs = topo.logs()
    assert "transaction refused (update sync" in logs and "nothing applied): nft: line " in logs, logs
    assert 'interkube_proxy_transaction_failures_total{cluster="a"} 1.0' in topo.http(9403, "/metrics")[1]
    assert topo.http(9403, "/ready")[0] == 200


def test_udp_flows_to_an_endpoint_that_went_away_are_forgotten(topo: Topology) -> None:
    a = topo.cluster("a")
    topo.start_proxy(topo.conf({"a": web(0, pods=a.pods)}))
    topo.wait_endpoints(vip(0, 10), 53, 3, "udp")
    # One client socket (one source port) all along: conntrack ties it to the pod it reached.
    with topo.client.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.connect((vip(0, 10), 53))

        def ask() -> str:
            sock.send(b"hello")
            return sock.recv(512).decode().split()[0]

        first = ask()
        assert {ask() for _ in range(5)} == {first}
        # That pod leaves the Service (its server still runs): the flow moves to another one.
        topo.snapshot("a", web(0, pods=[p for p in a.pods if p != first]))
        topo.wait_endpoints(vip(0, 10), 53, 2, "udp")
        # The entries go right after the transaction that the table shows: ask until then.
        wait_until(lambda: ask() != first, f"the flow to leave {first}\n{topo.logs()}", timeout=30)

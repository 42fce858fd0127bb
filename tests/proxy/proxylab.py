"""The scenario's network in namespaces: a client, a gateway running ``interkube proxy``, and one
namespace of "pods" per remote cluster with TCP and UDP servers on several addresses.

Routing is the scenario's: the client routes each cluster's Service range and pod range to the
gateway; the gateway routes each pod range to that cluster's namespace (and the Service range
there too, as a default route would: a VIP the proxy does not DNAT goes on toward the cluster,
so a missing rule shows as an unanswered connection, not as a local error). Pods answer the
client directly through the gateway (no masquerading needed: the gateway is on the way back).

Cluster ``i`` (a=0, b=1, c=2): Services 10.(96+i).0.0/16 and fd00:10:(96+i)::/112, pods
10.(1+i).0.N and fd00:(1+i)::N, link to the gateway 10.251.i.0/24 and fd00:251:i::/64.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interkube.lab.netns import read_line
from testkit.fakekube import Obj, endpoint_slice, service, write_snapshot
from testkit.netns import Lab, Netns
from testkit.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
CLIENT_V4, CLIENT_V6 = "10.250.0.2", "fd00:250::2"
GATEWAY_V4, GATEWAY_V6 = "10.250.0.1", "fd00:250::1"
TCP_PORT, UDP_PORT = 8080, 5353


def service_cidrs(i: int) -> tuple[str, str]:
    return f"10.{96 + i}.0.0/16", f"fd00:10:{96 + i}::/112"


def vip(i: int, n: int, v6: bool = False) -> str:
    return f"fd00:10:{96 + i}::{n:x}" if v6 else f"10.{96 + i}.0.{n}"


def pod(i: int, n: int, v6: bool = False) -> str:
    return f"fd00:{1 + i}::{n:x}" if v6 else f"10.{1 + i}.0.{n}"


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{REPO / 'src'}:{REPO}"}


@dataclass
class Remote:
    index: int
    name: str
    ns: Netns
    pods: list[str] = field(default_factory=list)


@dataclass
class Topology:
    lab: Lab
    tmp: Path
    client: Netns
    gateway: Netns
    remotes: dict[str, Remote] = field(default_factory=dict)
    proxy: subprocess.Popen[bytes] | None = None
    proxy_logs: list[Path] = field(default_factory=list)

    # --- building ----------------------------------------------------------------------------

    def cluster(self, name: str, pods: int = 3) -> Remote:
        """Cluster ``name`` (the next index) with ``pods`` pods, each serving TCP 8080 and UDP 5353
        on an IPv4 and an IPv6 address."""
        i = len(self.remotes)
        ns = self.lab.netns(f"pod{name}")
        self.lab.link(self.gateway, ns, [f"10.251.{i}.1/24", f"fd00:251:{i}::1/64"],
                      [f"10.251.{i}.2/24", f"fd00:251:{i}::2/64"])
        ns.ip("route", "add", "default", "via", f"10.251.{i}.1")
        ns.ip("-6", "route", "add", "default", "via", f"fd00:251:{i}::1")
        v4_cidr, v6_cidr = service_cidrs(i)
        for network in (f"10.{1 + i}.0.0/16", v4_cidr):
            self.gateway.ip("route", "add", network, "via", f"10.251.{i}.2")
            self.client.ip("route", "add", network, "via", GATEWAY_V4)
        for network in (f"fd00:{1 + i}::/64", v6_cidr):
            self.gateway.ip("-6", "route", "add", network, "via", f"fd00:251:{i}::2")
            self.client.ip("-6", "route", "add", network, "via", GATEWAY_V6)
        remote = Remote(i, name, ns)
        specs = []
        for n in range(1, pods + 1):
            for v6 in (False, True):
                address = pod(i, n, v6)
                ns.ip(*(["-6"] if v6 else []), "addr", "add", address + ("/128" if v6 else "/32"), "dev", "lo")
                host = f"[{address}]" if v6 else address
                specs += [f"tcp:{host}:{TCP_PORT}", f"udp:{host}:{UDP_PORT}", f"tcp:{host}:{TCP_PORT + 1}"]
            remote.pods.append(pod(i, n))
        server = ns.start([sys.executable, "-m", "testkit.l4echo", *specs], stdout=subprocess.PIPE, env=env())
        assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
        self.remotes[name] = remote
        return remote

    # --- the proxy ---------------------------------------------------------------------------

    def conf(self, clusters: Mapping[str, Sequence[Obj]] | None = None, extra: str = "",
             cluster_options: Mapping[str, str] | None = None) -> Path:
        """Write snapshot files for ``clusters`` (name -> objects) and a proxy configuration
        naming every remote cluster (with its Service ranges)."""
        blocks = []
        for name, remote in self.remotes.items():
            snapshot = self.tmp / f"{name}.yaml"
            if clusters is not None and name in clusters:
                write_snapshot(snapshot, clusters[name])
            elif not snapshot.exists():
                write_snapshot(snapshot, [])
            options = (cluster_options or {}).get(name, f"snapshot {snapshot}")
            blocks.append(f"    cluster {name} {{\n        {options}\n"
                          f"        service_cidr {' '.join(service_cidrs(remote.index))}\n    }}\n")
        path = self.tmp / "proxy.conf"
        path.write_text("proxy {\n" + "".join(blocks) + extra + "}\n")
        return path

    def snapshot(self, name: str, objects: Iterable[Obj]) -> None:
        write_snapshot(self.tmp / f"{name}.yaml", list(objects))

    def start_proxy(self, conf: Path) -> subprocess.Popen[bytes]:
        log = self.tmp / f"proxy-{len(self.proxy_logs)}.log"
        self.proxy_logs.append(log)
        with log.open("wb") as out:
            self.proxy = self.gateway.start([sys.executable, "-m", "interkube", "proxy", "-conf", str(conf)],
                                            stdout=out, stderr=subprocess.STDOUT, env=env())
        return self.proxy

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.proxy_logs if p.exists())

    def stop_proxy(self, sig: int = signal.SIGTERM) -> int:
        assert self.proxy is not None
        self.proxy.send_signal(sig)
        code = self.proxy.wait(30)
        self.proxy = None
        return code

    def status(self) -> list[dict[str, Any]]:
        proc = self.gateway.run(sys.executable, "-m", "interkube", "proxy", "status", "--json", check=False)
        if proc.returncode != 0:
            return []
        return list(json.loads(proc.stdout)["services"])

    def programmed(self, vip: str, port: int, protocol: str = "tcp") -> dict[str, Any] | None:
        for entry in self.status():
            if entry["vip"] == vip and entry["port"] == port and entry["protocol"] == protocol:
                return entry
        return None

    def wait_endpoints(self, vip: str, port: int, count: int | None, protocol: str = "tcp") -> None:
        """Until the live table has ``count`` endpoints behind the port (None: no such port)."""
        def seen() -> bool:
            entry = self.programmed(vip, port, protocol)
            return entry is None if count is None else entry is not None and len(entry["endpoints"]) == count

        def alive() -> bool:
            return self.proxy is not None and self.proxy.poll() is None

        wait_until(seen, f"{vip}:{port}/{protocol} with {count} endpoints in the table\n{self.logs()}",
                   timeout=60, alive=alive)

    def http(self, port: int, path: str) -> tuple[int, str]:
        """GET http://127.0.0.1:PORT/PATH inside the gateway: (status, body)."""
        script = ("import sys, urllib.request, urllib.error\n"
                  "try:\n    r = urllib.request.urlopen(sys.argv[1], timeout=10)\n"
                  "except urllib.error.HTTPError as e:\n    r = e\n"
                  "print(r.status); print(r.read().decode(), end='')\n")
        out = self.gateway.run(sys.executable, "-c", script, f"http://127.0.0.1:{port}{path}").stdout
        code, _, body = out.partition("\n")
        return int(code), body

    def tables(self) -> set[str]:
        out = self.gateway.run("nft", "list", "tables").stdout
        return {line.strip() for line in out.splitlines() if line.strip()}

    # --- traffic from the client -------------------------------------------------------------

    def tcp(self, address: str, port: int, ns: Netns | None = None, timeout: float = 5.0) -> list[str]:
        """Connect from the client; the backend's greeting: [pod address, port, source seen]."""
        with self.connect(address, port, ns, timeout) as sock:
            return read_line(sock).split()

    def connect(self, address: str, port: int, ns: Netns | None = None, timeout: float = 5.0) -> socket.socket:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = (ns or self.client).socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect((address, port))
        except BaseException:
            sock.close()
            raise
        return sock

    def udp(self, address: str, port: int, timeout: float = 5.0) -> list[str]:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with self.client.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.connect((address, port))
            sock.send(b"hello")
            return sock.recv(512).decode().split()


def greeting(sock: socket.socket) -> list[str]:
    """The first line of a connection opened by Topology.connect: [pod address, port, source]."""
    return read_line(sock).split()


def talk(sock: socket.socket, text: str) -> list[str]:
    """Send a line on a connection opened by Topology.connect (after reading its greeting)."""
    sock.sendall(text.encode() + b"\n")
    return read_line(sock).split()


def web(i: int, n: int = 10, *, port: int = 80, pods: Sequence[str] = (), name: str = "web",
        dual: bool = False, affinity: bool = False, v6_pods: Sequence[str] = (),
        target: int = TCP_PORT) -> list[Obj]:
    """Service ``name`` at VIP .n of cluster i (tcp ``port`` and udp 53) and its EndpointSlices."""
    ips = (vip(i, n), vip(i, n, True)) if dual else (vip(i, n),)
    svc = service("default", name, cluster_ips=ips, ports=(("http", port, "TCP"), ("dns", 53, "UDP")))
    if affinity:
        svc["spec"]["sessionAffinity"] = "ClientIP"
        svc["spec"]["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": 600}}
    ports = (("http", target, "TCP"), ("dns", UDP_PORT, "UDP"))
    objs = [svc, endpoint_slice("default", f"{name}-v4", name, [{"ip": p} for p in pods], ports=ports)]
    if v6_pods:
        objs.append(endpoint_slice("default", f"{name}-v6", name, [{"ip": p} for p in v6_pods], ports=ports,
                                   address_type="IPv6"))
    return objs

"""The lab, built and removed: :class:`Lab` is the Python API behind `interkube lab`.

``Lab.up(plan)`` writes its state (the namespaces it is about to create, then the processes it
starts) to the state folder before each step, so that ``down`` — or ``up`` itself, on any
failure — removes exactly what was made, by name and PID, even after a crash half-way.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from interkube.errors import LabError
from interkube.lab import netns
from interkube.lab.data import corefile, proxy_config, public_zone, snapshot, write_certificates, write_json
from interkube.lab.layout import DNS_PORT, PREFIX, PUBLIC_ZONE, ClusterLab, Layout, Pod, layout
from interkube.netplan.parse import load_plan

DEFAULT_STATE = ".interkube-lab"
STATE_FILE = "state.json"
#: Where each router's `interkube proxy` serves /ready, /status and /metrics (inside the router).
PROXY_HTTP = ("127.0.0.1", 9190)
#: How long a process the lab starts may take to answer (a loaded machine starts Python slowly).
START_TIMEOUT = 60.0


def _python() -> list[str]:
    return [sys.executable, "-m"]


class Lab:
    """A lab described by its state folder."""

    def __init__(self, state_dir: Path, state: dict[str, Any]) -> None:
        self.state_dir = state_dir
        self.state = state
        self.layout = Layout.from_dict(state["layout"])

    # --- the API tests and the doctor use --------------------------------------------------

    @property
    def lab_id(self) -> str:
        return self.layout.lab_id

    @property
    def namespaces(self) -> list[str]:
        """Every network namespace of the lab."""
        return list(self.layout.namespaces)

    @property
    def plan_path(self) -> Path:
        return Path(self.state["plan"])

    def cluster(self, name: str) -> ClusterLab:
        try:
            return self.layout.clusters[name]
        except KeyError:
            raise LabError(f"the lab has no cluster {name!r}; it has {', '.join(self.layout.clusters)}") from None

    def pod(self, cluster: str, pod: str) -> Pod:
        """A cluster's pod, or ``(external network, "host")``: the external network itself."""
        if cluster in self.layout.external:
            ext = self.layout.external[cluster]
            if pod != "host":
                raise LabError(f"external network {cluster} has one namespace, called host")
            return Pod("host", "", ext.netns, 0, ext.addresses, "host")
        if pod in ("router",):
            c = self.cluster(cluster)
            return Pod("router", "", c.router, 0, c.router_addresses, "router")
        if pod.startswith("node") and pod[4:].isdigit():
            c = self.cluster(cluster)
            node = c.nodes[int(pod[4:])]
            return Pod(pod, "", node.netns, int(pod[4:]), node.addresses, "node")
        return self.cluster(cluster).pod(pod)

    def netns(self, cluster: str, pod: str) -> str:
        """The network namespace of a pod, ``router``, ``node0``/``node1``, or an external
        network's ``host``."""
        return self.pod(cluster, pod).netns

    def dns_address(self, cluster: str, version: int = 4) -> str:
        """Where cluster ``cluster``'s DNS server answers (its pod, or node 0 for an overlay)."""
        return _of_version(self.cluster(cluster).dns_addresses, version, f"DNS of cluster {cluster}")

    def address(self, cluster: str, pod: str, version: int = 4) -> str:
        return _of_version(self.pod(cluster, pod).addresses, version, f"pod {cluster}/{pod}")

    def exec(self, cluster: str, pod: str, argv: Sequence[str], *, timeout: float = 60.0,
             input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the pod's namespace (``ip netns exec``); output captured as text."""
        return subprocess.run(["ip", "netns", "exec", self.netns(cluster, pod), *argv], input=input,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def socket(self, cluster: str, pod: str, family: int, kind: int) -> socket.socket:
        """A socket inside the pod's namespace."""
        return netns.socket_in(self.netns(cluster, pod), family, kind)

    def connect(self, cluster: str, pod: str, address: str, port: int, timeout: float = 10.0) -> str:
        """Connect from the pod to ``address:port`` and return the line the server sends (the lab's
        TCP servers send ``<cluster>/<pod>``); OSError (a timeout too) when it fails."""
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with self.socket(cluster, pod, family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect((address, port))
            return netns.read_line(sock)

    def query(self, cluster: str, pod: str, name: str, rdtype: str = "A", *, server: str | None = None,
              port: int = DNS_PORT, timeout: float = 10.0, tcp: bool = False) -> Any:
        """Ask ``server`` (default: the cluster's DNS Service VIP, as a pod's resolv.conf would)
        from inside the pod; a dnspython message."""
        import dns.message
        import dns.query

        where = server or self.cluster(cluster).dns_service[0]
        q = dns.message.make_query(name, rdtype)
        family = socket.AF_INET6 if ":" in where else socket.AF_INET
        with self.socket(cluster, pod, family, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM) as sock:
            if tcp:
                sock.settimeout(timeout)
                sock.connect((where, port))
            sock.setblocking(False)  # dnspython waits with select() on the sockets it is given
            if tcp:
                return dns.query.tcp(q, where, port=port, timeout=timeout, sock=sock)
            return dns.query.udp(q, where, port=port, timeout=timeout, sock=sock)

    def status(self) -> dict[str, Any]:
        """The lab as data: clusters, pods and addresses, links, processes (and whether they run)."""
        present = set(netns.existing(f"{PREFIX}-{self.lab_id}-"))
        processes = {label: {"pid": pid, "running": netns._running(pid)}
                     for label, pid in self.state.get("pids", {}).items()}
        return {
            "lab": self.lab_id, "state": str(self.state_dir), "plan": self.state["plan"],
            "options": self.state.get("options", {}), "up_seconds": self.state.get("up_seconds"),
            "namespaces": {"expected": len(self.layout.namespaces),
                           "present": len(present & set(self.layout.namespaces))},
            "clusters": {name: {
                "networking": c.networking, "router": c.router, "router_addresses": c.router_addresses,
                "nodes": [{"netns": n.netns, "addresses": n.addresses, "pod_blocks": n.pod_blocks} for n in c.nodes],
                "dns": {"netns": c.dns_netns, "addresses": c.dns_addresses, "service": c.dns_service},
                "forward": c.forward,
                "pods": {p.name: {"namespace": p.namespace, "netns": p.netns, "node": p.node,
                                  "addresses": p.addresses, "port": p.port} for p in c.pods.values()},
                "services": [{"name": s.name, "namespace": s.namespace, "cluster_ips": s.cluster_ips,
                              "port": s.port, "endpoints": s.addresses} for s in c.services],
                "proxy": self.state.get("proxies", {}).get(name),
                "public": c.public,
            } for name, c in self.layout.clusters.items()},
            "external": {name: {"netns": e.netns, "addresses": e.addresses}
                         for name, e in self.layout.external.items()},
            "links": [{"link": w.link, "between": list(w.members), "wire": w.a_name} for w in self.layout.wires],
            "processes": processes,
        }

    # --- up and down ----------------------------------------------------------------------

    @classmethod
    def load(cls, state_dir: str | Path = DEFAULT_STATE) -> Lab:
        path = Path(state_dir) / STATE_FILE
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError:
            raise LabError(f"no lab in {state_dir} (no {STATE_FILE}); start one with `interkube lab up PLAN`") from None
        return cls(Path(state_dir), state)

    @classmethod
    def up(cls, plan_path: str | Path, state_dir: str | Path | None = None, *, dot: bool = False,
           nodes: int = 2) -> Lab:
        """Build the lab of ``plan_path``; on any failure remove what was made and raise."""
        why = netns.missing()
        if why:
            raise LabError(why)
        started = time.monotonic()
        state_path = Path(state_dir if state_dir is not None else DEFAULT_STATE).resolve()
        if (state_path / STATE_FILE).exists():
            raise LabError(f"a lab is already up in {state_path}; `interkube lab down` removes it")
        plan = load_plan(plan_path)
        lab_id = secrets.token_hex(3)
        built = layout(plan, lab_id, nodes=nodes)
        state_path.mkdir(parents=True, exist_ok=True)
        plan_copy = state_path / "plan.yaml"
        shutil.copyfile(plan_path, plan_copy)
        state: dict[str, Any] = {"plan": str(plan_copy), "source": str(Path(plan_path).resolve()),
                                 "options": {"dot": dot, "nodes": nodes}, "layout": built.to_dict(), "pids": {}}
        lab = cls(state_path, state)
        lab._save()  # before anything exists: `down` then knows every name `up` may create
        try:
            lab._build(dot)
        except BaseException:
            lab.down()
            raise
        lab.state["up_seconds"] = round(time.monotonic() - started, 3)
        lab._save()
        return lab

    def down(self) -> list[str]:
        """Stop the lab's processes and delete its namespaces; returns what could not be removed."""
        pids = list(self.state.get("pids", {}).values())
        for name in netns.existing(f"{PREFIX}-{self.lab_id}-"):
            pids += [p for p in netns.pids(name) if p not in pids]  # anything run inside by hand
        netns.stop(pids)
        names = list(dict.fromkeys([*self.layout.namespaces, *netns.existing(f"{PREFIX}-{self.lab_id}-")]))
        failed = netns.delete(names)
        if not failed:
            for sub in ("data", "dns", "certs", "logs", "proxy"):
                shutil.rmtree(self.state_dir / sub, ignore_errors=True)
            for f in (STATE_FILE, "plan.yaml", "servers.json", "agent.ready"):
                (self.state_dir / f).unlink(missing_ok=True)
            try:
                self.state_dir.rmdir()
            except OSError:
                pass  # the user's own files are in it
        return failed

    def _save(self) -> None:
        write_json(self.state_dir / STATE_FILE, self.state)

    def _build(self, dot: bool) -> None:
        lay = self.layout
        netns.add(lay.namespaces)
        # Defaults first: the veths made next inherit them (no DAD, no reverse-path filter).
        for ns, values in lay.sysctls.items():
            netns.sysctls(ns, {k: v for k, v in values.items() if not _per_device(k)})
        netns.veths(lay.veths)
        for ns, values in lay.sysctls.items():
            netns.sysctls(ns, {k: v for k, v in values.items() if _per_device(k)})
        netns.finish({ns: netns.batch(ns, cmds) for ns, cmds in lay.commands.items()}, "addresses and routes")
        netns.finish({ns: netns.nft(ns, rules) for ns, rules in lay.nft.items()}, "nftables rules")
        for sub in ("data", "dns", "logs"):
            (self.state_dir / sub).mkdir(exist_ok=True)
        for name, cluster in lay.clusters.items():
            write_json(self.state_dir / "data" / f"{name}.json", snapshot(cluster))
        (self.state_dir / "data" / f"{PUBLIC_ZONE}.zone").write_text(public_zone(lay))
        certs = self.state_dir / "certs"
        if dot:
            write_certificates(lay, certs)
        servers = [{"netns": p.netns, "address": a, "port": p.port, "reply": f"{c.name}/{p.name}"}
                   for c in lay.clusters.values() for p in c.pods.values() if p.port and p.role != "dns"
                   for a in p.addresses]
        write_json(self.state_dir / "servers.json", servers)
        ready = self.state_dir / "agent.ready"
        ready.unlink(missing_ok=True)
        agent = self._start("agent", None, [*_python(), "interkube.lab.agent", str(self.state_dir / "servers.json"),
                                            str(ready)])
        dns = {}
        for name, cluster in lay.clusters.items():
            conf = self.state_dir / "dns" / name / "Corefile"
            conf.parent.mkdir(exist_ok=True)
            conf.write_text(corefile(lay, name, self.state_dir / "data", dot=dot, certs=certs))
            dns[name] = self._start(f"dns/{name}", cluster.dns_netns,
                                    [*_python(), "interkube", "serve", "-conf", str(conf), "-quiet"])
        proxies = {}
        for name, cluster in lay.clusters.items():
            if cluster.proxied:
                conf = self.state_dir / "proxy" / name / "proxy.conf"
                conf.parent.mkdir(parents=True, exist_ok=True)
                conf.write_text(proxy_config(lay, name, self.state_dir / "data", PROXY_HTTP))
                proxies[name] = self._start(f"proxy/{name}", cluster.router,
                                            [*_python(), "interkube", "proxy", "-conf", str(conf), "--quiet"])
                self.state.setdefault("proxies", {})[name] = {"clusters": cluster.proxied,
                                                              "http": f"{PROXY_HTTP[0]}:{PROXY_HTTP[1]}",
                                                              "conf": str(conf)}
        self._save()
        self._wait(agent, "agent", ready.exists)
        for name, proc in dns.items():
            self._wait(proc, f"dns/{name}", lambda name=name: self._answers(name))
        for name, proc in proxies.items():
            self._wait(proc, f"proxy/{name}", lambda name=name: self._proxy_ready(name))

    def _start(self, label: str, ns: str | None, argv: list[str]) -> subprocess.Popen[bytes]:
        log = self.state_dir / "logs" / f"{label.replace('/', '-')}.log"
        prefix = ["ip", "netns", "exec", ns] if ns else []
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        with open(log, "wb") as out:
            proc = subprocess.Popen([*prefix, *argv], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, env=env)
        self.state["pids"][label] = proc.pid
        self._save()
        return proc

    def _wait(self, proc: subprocess.Popen[bytes], label: str, ready: Any) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not ready():
            if proc.poll() is not None:
                raise LabError(f"{label} exited with status {proc.returncode}: {self._log_tail(label)}")
            if time.monotonic() > deadline:
                raise LabError(f"{label} did not become ready in {START_TIMEOUT:.0f} s: {self._log_tail(label)}")
            time.sleep(0.05)  # polling a condition (a file, an answer), bounded by the deadline

    def _log_tail(self, label: str) -> str:
        log = self.state_dir / "logs" / f"{label.replace('/', '-')}.log"
        try:
            return " | ".join(log.read_text(errors="replace").strip().splitlines()[-5:]) or "(no output)"
        except OSError:
            return "(no log)"

    def _proxy_ready(self, cluster: str) -> bool:
        """The cluster's proxy says /ready (its tables programmed, every cluster's data read)."""
        try:
            with self.socket(cluster, "router", socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.settimeout(1.0)
                sock.connect(PROXY_HTTP)
                sock.sendall(b"GET /ready HTTP/1.0\r\nHost: lab\r\n\r\n")
                head = sock.recv(64)
            return head.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200"))
        except OSError:
            return False

    def _answers(self, cluster: str) -> bool:
        """The cluster's DNS server answers SOA cluster.local from inside its namespace."""
        import dns.exception

        c = self.cluster(cluster)
        v6 = all(ipaddress.ip_address(a).version == 6 for a in c.dns_addresses)
        try:
            with netns.inside(c.dns_netns):
                sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
            with sock:
                import dns.message
                import dns.query

                sock.setblocking(False)  # dnspython waits with select() on the sockets it is given
                q = dns.message.make_query("cluster.local", "SOA")
                dns.query.udp(q, "::1" if v6 else "127.0.0.1", port=DNS_PORT, timeout=0.3, sock=sock)
            return True
        except (OSError, dns.exception.DNSException):
            return False


def _per_device(key: str) -> bool:
    parts = key.split("/")
    return len(parts) > 3 and parts[1] == "conf" and parts[2] not in ("all", "default")


def _of_version(addresses: list[str], version: int, what: str) -> str:
    for a in addresses:
        if ipaddress.ip_address(a).version == version:
            return a
    raise LabError(f"{what} has no IPv{version} address")

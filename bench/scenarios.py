"""The scenarios of issue 7: what is asked, what the right answers are, and the goals.

Every server in a scenario is configured (in :mod:`bench.servers`) to give the answers
:meth:`Scenario.expected` computes, and the harness checks a sample of them before it
measures anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench import k8s

#: Zone of the forwarding scenarios; the upstream (loadgen's responder) answers every name.
FWD_ZONE = "fwd.bench."
HOSTS_ZONE = "example.org."


@dataclass(frozen=True)
class Goal:
    """interkube's closed-loop QPS divided by ``peer``'s must be at least ``ratio``."""

    peer: str
    ratio: float


@dataclass
class Scenario:
    id: str
    title: str
    kind: str                       # memory | k8s | cache | forward | ceiling
    zone: str
    transport: str = "udp"          # udp | tcp | dot (DNS over TLS, RFC 7858)
    records: list[tuple[str, str]] = field(default_factory=list)  # (fqdn, IPv4) for memory/k8s
    ttl: int = 3600
    upstream_ttl: int | None = None  # forwarding scenarios: TTL the upstream answers with
    names: list[str] = field(default_factory=list)
    needs_plugins: tuple[str, ...] = ()
    goals: tuple[Goal, ...] = ()
    workers: int = 1                 # S5: interkube workers (1 and 2 are both measured)
    k8s_services: int = k8s.DEFAULT_SERVICES  # S1-k8s: Services in the cluster (--k8s-services)
    notes: list[str] = field(default_factory=list)

    @property
    def forwarding(self) -> bool:
        return self.kind in ("cache", "forward")

    @property
    def synthetic(self) -> bool:
        """Answers computed by loadgen's responder (forwarding scenarios and S0)."""
        return self.kind in ("cache", "forward", "ceiling")

    def query_lines(self) -> list[str]:
        return [f"{n} A" for n in self.names]

    def write_queries(self, path: Path) -> Path:
        path.write_text("\n".join(self.query_lines()) + "\n")
        return path

    def expected(self, name: str) -> list[str]:
        """The A addresses every server must answer for ``name``."""
        if self.synthetic:
            return [responder_address(name)]
        wanted = name.lower()
        return sorted(ip for n, ip in self.records if n == wanted)


def responder_address(name: str) -> str:
    """The address loadgen's responder answers for ``name``: FNV-1a over the lower-cased wire
    labels (length bytes included), folded into 198.18.0.0/15. Mirrors answer() in loadgen.c."""
    h = 2166136261
    for label in name.rstrip(".").split("."):
        for b in bytes([len(label)]) + label.lower().encode():
            h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return f"198.{18 + ((h >> 16) & 1)}.{(h >> 8) & 0xFF}.{h & 0xFF}"


# Issue 7's goals: S1 and S2 >= 1.0x dnsmasq and knot-resolver, >= 0.9x unbound, >= 2x CoreDNS.
MEMORY_GOALS = (Goal("dnsmasq", 1.0), Goal("kresd", 1.0), Goal("unbound", 0.9), Goal("coredns", 2.0))
FORWARD_GOALS = (Goal("dnsmasq", 1.0),)
S5_GOAL = 1.8  # two workers >= 1.8x one worker


def hosts_records(n: int = 100) -> list[tuple[str, str]]:
    """``n`` names in example.org, each with one address from TEST-NET-1 / TEST-NET-2."""
    return [(f"www-{i:03d}.{HOSTS_ZONE}", f"192.0.2.{i + 1}" if i < 250 else f"198.51.100.{i - 249}")
            for i in range(n)]


def build(ids: list[str], k8s_services: int = k8s.DEFAULT_SERVICES) -> list[Scenario]:
    """The scenarios named (S1 expands to S1-hosts and S1-k8s), in the issue's order; S0 (the
    generators' ceiling, no DNS server at all) first when asked for. S1-k8s's cluster has
    ``k8s_services`` Services (and the two every cluster has)."""
    want = set()
    for i in ids:
        i = i.strip().upper()
        if i == "S1":
            want |= {"S1-HOSTS", "S1-K8S"}
        elif i:
            want.add(i)
    hosts = hosts_records()
    fwd_names = [f"n{i:04d}.{FWD_ZONE}" for i in range(1000)]
    out: list[Scenario] = []
    if "S0" in want:
        out.append(Scenario(
            "S0", "the generators' ceiling: loadgen's C responder on the server core instead of a "
            "DNS server (1,000 names, UDP)", "ceiling", FWD_ZONE, names=fwd_names))
    if "S1-HOSTS" in want:
        out.append(Scenario(
            "S1-hosts", "answers from memory: 100 hosts records (A), UDP", "memory", HOSTS_ZONE,
            records=hosts, names=[n for n, _ in hosts], needs_plugins=("hosts",),
            goals=MEMORY_GOALS))
    if "S1-K8S" in want:
        svcs = k8s.services(k8s_services)
        recs = [(s.fqdn, s.cluster_ip) for s in svcs]
        out.append(Scenario(
            "S1-k8s", f"answers from memory: Kubernetes Service A records, {len(svcs):,} Services "
            "(snapshot / API server), UDP", "k8s", k8s.DOMAIN, records=recs, ttl=k8s.TTL,
            names=[n for n, _ in recs if not n.startswith(("kubernetes.", "kube-dns."))],
            needs_plugins=("kubernetes",), goals=MEMORY_GOALS, k8s_services=k8s_services))
    if "S2" in want:
        out.append(Scenario(
            "S2", "cache hits after forwarding: 1,000 names, warmed, upstream TTL 3600, UDP",
            "cache", FWD_ZONE, upstream_ttl=3600, names=fwd_names,
            needs_plugins=("cache", "forward"), goals=MEMORY_GOALS))
    if "S3" in want:
        out.append(Scenario(
            "S3", "forwarding with the cache off: 1,000 distinct names, upstream on loopback "
            "(TTL 0), UDP", "forward", FWD_ZONE, upstream_ttl=0, names=fwd_names,
            needs_plugins=("forward",), goals=FORWARD_GOALS))
    if "S4" in want:
        out.append(Scenario(
            "S4", "TCP with pipelining: the S1-hosts data over TCP", "memory", HOSTS_ZONE,
            transport="tcp", records=hosts, names=[n for n, _ in hosts],
            needs_plugins=("hosts",)))
    if "S5" in want:
        out.append(Scenario(
            "S5", "two workers on two cores (SO_REUSEPORT): the S1-hosts data, UDP", "memory",
            HOSTS_ZONE, records=hosts, names=[n for n, _ in hosts], needs_plugins=("hosts",),
            workers=2))
    if "S6" in want:
        out.append(Scenario(
            "S6", "DNS over TLS with pipelining: the S1-hosts data over DoT", "memory", HOSTS_ZONE,
            transport="dot", records=hosts, names=[n for n, _ in hosts],
            needs_plugins=("hosts", "tls")))
    unknown = want - {"S0", "S1-HOSTS", "S1-K8S", "S2", "S3", "S4", "S5", "S6"}
    if unknown:
        raise SystemExit(f"bench: unknown scenario(s) {', '.join(sorted(unknown))} "
                         "(S0, S1, S1-hosts, S1-k8s, S2, S3, S4, S5, S6)")
    return out

"""The rules R1..R10 that an address plan of connected clusters must follow, and the checker.

The scenarios of docs/scenarios.md (Forwarded DNS between clusters; Addressing rules and VIP
black holes; Discovery across clusters, VIP proxying and the merged domain; IPv6 between
clusters) explain why connected clusters fail: ranges that collide, Service VIP ranges that
alias a real address and swallow replies (a black hole), overlay pods that cannot be reached
from outside, forwarded DNS that needs flat routing, IPv6 prefix sizes. Each
rule has an ID, a severity, a one-line explanation and a fix hint; a :class:`Finding` names the
clusters and ranges involved and where they are written in the plan.

Overlaps (R1, R2, R3, R6, R9) come from one interval sweep over every range of the plan and the
reserved ranges, so the cost grows with the number of ranges and of overlaps, not their square.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from interkube.netplan.model import (
    Address,
    AddressRange,
    Cluster,
    IPNetwork,
    Link,
    Networking,
    Plan,
    Role,
)
from interkube.netplan.sweep import first_free_block, merge_intervals, overlapping_pairs
from interkube.netplan.topology import Connectivity, link_count, neighbours


class Severity(enum.IntEnum):
    """How bad a finding is; errors make ``interkube check`` exit non-zero."""

    INFO = 0
    WARNING = 1
    ERROR = 2

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Rule:
    """One rule: ``severity`` is the worst it reports."""

    id: str
    severity: Severity
    title: str
    explanation: str
    fix: str


RULES: tuple[Rule, ...] = (
    Rule("R1", Severity.ERROR, "routed ranges are unique",
         "A routed cluster's pod and node addresses are reachable from everywhere, so no other "
         "cluster or external network may use them (scenario: Addressing rules and VIP black holes).",
         "Give each routed cluster node and pod ranges that no other cluster or network uses."),
    Rule("R2", Severity.ERROR, "overlay clusters: unique nodes, unreachable pods",
         "An overlay cluster's nodes must be unique; its pods may repeat other ranges but then "
         "cannot be reached from other clusters without a gateway (scenarios: Forwarded DNS "
         "between clusters; Addressing rules and VIP black holes).",
         "Give overlay nodes unique ranges; for pod-to-pod traffic use routed networking or a gateway."),
    Rule("R3", Severity.ERROR, "Service VIP ranges hold no real address",
         "A Service VIP range that contains a node, pod, client or external network swallows the "
         "replies meant for it: a black hole (scenario: Addressing rules and VIP black holes). "
         "VIP ranges may repeat between clusters.",
         "Move the Service range to addresses that nothing on the network uses."),
    Rule("R4", Severity.ERROR, "forwarded DNS needs flat routing",
         "Forwarding a remote zone hands out the remote pods' own addresses, so clients must reach "
         "them without DNAT: routed pods and a path without NAT (scenario: Forwarded DNS between "
         "clusters).",
         "Route the remote pod range to the client cluster without address translation."),
    Rule("R5", Severity.WARNING, "forwarded namespaces shadow local ones",
         "Forwarding <ns>.svc.cluster.local to another cluster hides a local namespace of the same "
         "name, and forwarding a namespace the remote does not have answers nothing (scenario: "
         "Forwarded DNS between clusters).",
         "Use globally unique namespace names for what is shared between clusters."),
    Rule("R6", Severity.ERROR, "proxied Service ranges are unique",
         "Proxying remote Service VIPs routes each VIP to one cluster, so clusters whose VIPs are "
         "proxied together need Service ranges that do not overlap (scenario: Discovery across "
         "clusters, VIP proxying and the merged domain).",
         "Give each cluster joined by service_proxy links a Service range of its own."),
    Rule("R7", Severity.ERROR, "IPv6 prefixes and families",
         "IPv6 pod networks want a /64 or larger per node and at least a /80 for Docker-style "
         "allocation; connected clusters should share address families and ULA/global scope "
         "(scenario: IPv6 between clusters).",
         "Give each node a /64 of pods and keep connected clusters in the same families and scope."),
    Rule("R8", Severity.ERROR, "cluster DNS is where it should be",
         "A cluster's DNS endpoints must lie inside its own routed node or pod ranges and its DNS "
         "VIP inside its Service range; clusters that forward to it must reach the endpoints "
         "(scenario: Forwarded DNS between clusters).",
         "Fix the DNS addresses, or link the clusters so the DNS endpoints are reachable."),
    Rule("R9", Severity.ERROR, "no reserved ranges",
         "This-network, loopback, link-local, multicast and reserved ranges (and their IPv6 "
         "counterparts) cannot be used for nodes, pods, Services or networks.",
         "Use private ranges (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7) or your own global ones."),
    Rule("R10", Severity.WARNING, "topology",
         "A full mesh of N clusters needs N(N-1)/2 links, hub-and-spoke N-1 (scenario: IPv6 "
         "between clusters); clusters without a path between them cannot talk at all.",
         "Add links (or a hub) so that every cluster that must talk has a path."),
)
RULES_BY_ID: dict[str, Rule] = {rule.id: rule for rule in RULES}

RESERVED: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(cidr), what) for cidr, what in (
        ("0.0.0.0/8", "this-network"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::ffff:0:0/96", "IPv4-mapped"),
        ("fe80::/10", "link-local"),
        ("ff00::/8", "multicast"),
    )
)

# Where fix hints look for a free block to suggest.
_PRIVATE_POOLS_V4 = tuple(ipaddress.IPv4Network(c) for c in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
_ULA = ipaddress.IPv6Network("fc00::/7")
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")


@dataclass(frozen=True)
class Involved:
    """A range or address a finding is about, and where the plan writes it."""

    owner: str
    role: Role
    value: str
    where: str


@dataclass(frozen=True)
class Finding:
    """One thing wrong (or worth knowing) about a plan."""

    rule: str
    severity: Severity
    message: str
    fix: str
    subjects: tuple[str, ...]
    involved: tuple[Involved, ...] = ()


@dataclass(frozen=True)
class Report:
    """A plan and what the rules found in it, worst first."""

    plan: Plan
    findings: tuple[Finding, ...]

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity is severity)

    def by_rule(self, rule: str, severity: Severity | None = None) -> list[Finding]:
        """The findings of one rule (and, if given, one severity)."""
        return [f for f in self.findings if f.rule == rule and (severity is None or f.severity is severity)]

    @property
    def ok(self) -> bool:
        """No errors (warnings and notes do not fail a plan)."""
        return not any(f.severity is Severity.ERROR for f in self.findings)


def check(plan: Plan) -> Report:
    """Apply every rule to ``plan``."""
    checker = _Checker(plan)
    checker.run()
    order = {rule.id: i for i, rule in enumerate(RULES)}
    findings = sorted(checker.findings, key=lambda f: (-f.severity, order[f.rule]))
    return Report(plan, tuple(findings))


class _Kind(enum.Enum):
    ADDRESSABLE = "addressable"    # nodes, routed pods, external networks
    OVERLAY_PODS = "overlay pods"  # visible only inside their cluster
    VIP = "vip"                    # Service ranges: virtual, inside their cluster
    RESERVED = "reserved"


@dataclass(frozen=True, slots=True)
class _Block:
    """One range in the sweep, with what it belongs to."""

    owner: str
    owner_id: int       # same id = same cluster or external network
    role: Role
    kind: _Kind
    network: IPNetwork
    noun: str           # "pod range", "client network", "loopback range"
    where: str

    def label(self) -> str:
        if self.kind is _Kind.RESERVED:
            return f"the {self.noun} {self.network}"
        if self.role is Role.EXTERNAL:
            return f"{self.noun} {self.network} of external {self.owner}"
        return f"{self.noun} {self.network} of cluster {self.owner}"

    def involved(self) -> Involved:
        return Involved(self.owner, self.role, str(self.network), self.where)


def _links(count: int) -> str:
    return f"{count} link{'s' * (count != 1)}"


def _ipv6_scope(network: IPNetwork) -> str | None:
    if network.version != 6:
        return None
    if network.subnet_of(_ULA):
        return "ULA"
    if network.subnet_of(_GLOBAL_UNICAST):
        return "global"
    return None


class _Checker:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.file = plan.source
        self.clusters = {c.name: c for c in plan.clusters}
        self.findings: list[Finding] = []
        self.any_path = Connectivity(plan)
        self.flat_path = Connectivity(plan, flat_only=True)
        # cluster -> the clusters that proxy its VIPs (a service_proxy link works both ways)
        self.proxied_by = neighbours(link for link in plan.links if link.service_proxy)
        self._used_v4: list[tuple[int, int]] | None = None

    def run(self) -> None:
        self.overlaps()
        self.overlay_links()
        self.forwards()
        self.ipv6()
        self.cluster_dns()
        self.topology()

    # --- helpers -------------------------------------------------------------------------

    def add(self, rule: str, severity: Severity, message: str, subjects: Iterable[str],
            involved: Iterable[Involved] = (), fix: str | None = None) -> None:
        self.findings.append(Finding(rule, severity, message, fix or RULES_BY_ID[rule].fix,
                                     tuple(dict.fromkeys(subjects)), tuple(involved)))

    def where(self, item: AddressRange | Address) -> str:
        return item.origin.describe(self.file)

    def free_block_hint(self, network: IPNetwork) -> str:
        """``, e.g. 172.16.0.0/16, which nothing in the plan uses`` when there is such a block
        of the size of ``network`` in the private IPv4 ranges; empty otherwise."""
        if network.version != 4:
            return ""  # IPv6 ULA prefixes should be random (RFC 4193): not ours to pick
        if self._used_v4 is None:
            self._used_v4 = merge_intervals(
                (int(n.network_address), int(n.broadcast_address))
                for n in self._all_networks() if n.version == 4)
        # Look in the private block the range is already in first: a Service range in
        # 172.16.0.0/12 had better move within it.
        pools = sorted(_PRIVATE_POOLS_V4, key=lambda pool: not network.subnet_of(pool))
        for pool in pools:
            block = first_free_block(pool, network.prefixlen, self._used_v4)
            if block is not None:
                return f", e.g. {block}, which nothing in the plan uses"
        return ""

    def _all_networks(self) -> Iterable[IPNetwork]:
        for cluster in self.plan.clusters:
            for r in (*cluster.nodes, *cluster.pods, *cluster.services):
                yield r.network
        for ext in self.plan.external:
            for r in ext.cidrs:
                yield r.network
        for network, _ in RESERVED:
            yield network

    # --- R1, R2, R3, R6, R9: one sweep over every range ------------------------------------

    def blocks(self) -> Iterable[tuple[IPNetwork, _Block]]:
        nouns = {Role.NODES: "node range", Role.PODS: "pod range", Role.SERVICES: "Service range"}
        for index, cluster in enumerate(self.plan.clusters):
            overlay = cluster.networking is Networking.OVERLAY
            for role in (Role.NODES, Role.PODS, Role.SERVICES):
                if role is Role.SERVICES:
                    kind = _Kind.VIP
                elif role is Role.PODS and overlay:
                    kind = _Kind.OVERLAY_PODS
                else:
                    kind = _Kind.ADDRESSABLE
                noun = nouns[role] + (" (inferred)" if role.value in cluster.inferred else "")
                for r in cluster.ranges(role):
                    yield r.network, _Block(cluster.name, index, role, kind, r.network, noun, self.where(r))
        base = len(self.plan.clusters)
        for offset, ext in enumerate(self.plan.external):
            for r in ext.cidrs:
                yield r.network, _Block(ext.name, base + offset, Role.EXTERNAL, _Kind.ADDRESSABLE,
                                        r.network, f"{ext.kind} network", self.where(r))
        for offset, (network, what) in enumerate(RESERVED):
            yield network, _Block("reserved", -1 - offset, Role.RESERVED, _Kind.RESERVED, network,
                                  f"{what} range", "built in")

    def overlaps(self) -> None:
        for outer, inner in overlapping_pairs(self.blocks()):
            self.classify(outer, inner)

    def classify(self, outer: _Block, inner: _Block) -> None:
        kinds = (outer.kind, inner.kind)
        if _Kind.RESERVED in kinds:
            if outer.kind is not inner.kind:
                used, reserved = (inner, outer) if outer.kind is _Kind.RESERVED else (outer, inner)
                self.add("R9", Severity.ERROR, f"{self.relation(outer, inner)}: {reserved.noun}s "
                         "cannot carry nodes, pods, Services or networks",
                         [used.owner], [used.involved()],
                         fix=f"move the {used.noun} of {used.owner} to private addresses"
                             f"{self.free_block_hint(used.network)}")
            return
        same_owner = outer.owner_id == inner.owner_id
        if _Kind.VIP in kinds:
            if outer.kind is _Kind.VIP and inner.kind is _Kind.VIP:
                if not same_owner and self.proxied_together(outer.owner, inner.owner):
                    self.add("R6", Severity.ERROR,
                             f"{self.relation(outer, inner)}, and their VIPs are proxied together: "
                             "a proxied VIP would have two clusters behind it",
                             [outer.owner, inner.owner], [outer.involved(), inner.involved()],
                             fix=f"give cluster {inner.owner} a Service range of its own"
                                 f"{self.free_block_hint(inner.network)}")
                return
            vip, other = (outer, inner) if outer.kind is _Kind.VIP else (inner, outer)
            if other.kind is _Kind.OVERLAY_PODS and not same_owner:
                return  # another cluster's overlay pods are invisible to this cluster
            self.add("R3", Severity.ERROR,
                     f"{self.relation(outer, inner)}: cluster {vip.owner} sends traffic for those "
                     "addresses into its Service VIPs, so their packets and replies vanish (a black hole)",
                     [vip.owner, other.owner], [vip.involved(), other.involved()],
                     fix=f"move the Service range of cluster {vip.owner} off {other.network}"
                         f"{self.free_block_hint(vip.network)} (Service ranges may repeat between clusters)")
            return
        if same_owner or kinds == (_Kind.OVERLAY_PODS, _Kind.OVERLAY_PODS):
            return  # a cluster's pods may share its node range (AWS VPC CNI); overlay pods may repeat
        if _Kind.OVERLAY_PODS in kinds:
            pods, other = (outer, inner) if outer.kind is _Kind.OVERLAY_PODS else (inner, outer)
            self.add("R2", Severity.WARNING,
                     f"{self.relation(outer, inner)}: pods of overlay cluster {pods.owner} cannot "
                     f"reach {other.owner} at those addresses, they stay inside the overlay",
                     [pods.owner, other.owner], [pods.involved(), other.involved()],
                     fix=f"give overlay cluster {pods.owner} a pod range that {other.owner} does not use"
                         f"{self.free_block_hint(pods.network)}")
            return
        if outer.role is Role.EXTERNAL and inner.role is Role.EXTERNAL:
            return  # nested external networks are normal: a VPN pool holding a client subnet
        routed = [b for b in (outer, inner) if b.role in (Role.NODES, Role.PODS)
                  and self.clusters[b.owner].networking is Networking.ROUTED]
        rule = "R1" if routed else "R2"
        movable = routed[-1] if routed else (inner if inner.role is not Role.EXTERNAL else outer)
        self.add(rule, Severity.ERROR,
                 f"{self.relation(outer, inner)}: packets for those addresses have two destinations",
                 [outer.owner, inner.owner], [outer.involved(), inner.involved()],
                 fix=f"give the {movable.noun} of {movable.owner} addresses of its own"
                     f"{self.free_block_hint(movable.network)}")

    @staticmethod
    def relation(outer: _Block, inner: _Block) -> str:
        if outer.network == inner.network:
            return f"{outer.label()} is the same as {inner.label()}"
        return f"{outer.label()} contains {inner.label()}"

    def proxied_together(self, a: str, b: str) -> bool:
        """True when one of the two proxies the other's VIPs, or a third cluster proxies both."""
        peers_a, peers_b = self.proxied_by.get(a, set()), self.proxied_by.get(b, set())
        return b in peers_a or not peers_a.isdisjoint(peers_b)

    # --- R2: links that expect pod traffic to overlay clusters -----------------------------

    def overlay_links(self) -> None:
        for link in self.plan.links:
            if not link.pod_traffic:
                continue
            for member in link.between:
                cluster = self.clusters.get(member)
                if cluster is None or cluster.networking is not Networking.OVERLAY:
                    continue
                others = [m for m in link.between if m != member]
                self.add("R2", Severity.WARNING,
                         f"link {link.label()} expects pod-to-pod traffic, but cluster {member} is an "
                         f"overlay: {', '.join(others)} cannot reach its pods without a gateway",
                         [member, *others],
                         [Involved(member, Role.PODS, str(r.network), self.where(r)) for r in cluster.pods],
                         fix=f"make cluster {member} routed, or put a gateway that routes (and SNATs) "
                             "into its overlay")

    # --- R4, R5, R8 for forwarded namespaces -----------------------------------------------

    def forwards(self) -> None:
        for cluster in self.plan.clusters:
            for fwd in cluster.forward:
                target = self.clusters[fwd.to]
                where = fwd.origin.describe(self.file)
                zone = f"{fwd.namespace}.svc.cluster.local"
                self.forward_routing(cluster, target, zone, where)
                self.forward_namespaces(cluster, target, fwd.namespace, zone, where)
                self.forward_dns_reachable(cluster, target, zone, where)

    def forward_routing(self, client: Cluster, target: Cluster, zone: str, where: str) -> None:
        subjects = [client.name, target.name]
        if target.networking is Networking.OVERLAY:
            self.add("R4", Severity.ERROR,
                     f"cluster {client.name} forwards {zone} to {target.name} ({where}), but "
                     f"{target.name}'s pods are on an overlay: the addresses DNS returns are unreachable",
                     subjects, fix=f"run cluster {target.name} with routed pod networking, or do not "
                                   "forward its zone")
        elif self.any_path.connected(client.name, target.name) and \
                not self.flat_path.connected(client.name, target.name):
            self.add("R4", Severity.ERROR,
                     f"cluster {client.name} forwards {zone} to {target.name} ({where}), but every "
                     "path between them translates addresses (nat: true)",
                     subjects, fix=f"add a link between {client.name} and {target.name} without NAT")

    def forward_namespaces(self, client: Cluster, target: Cluster, namespace: str, zone: str,
                           where: str) -> None:
        subjects = [client.name, target.name]
        if namespace in client.namespaces:
            self.add("R5", Severity.WARNING,
                     f"cluster {client.name} forwards {zone} to {target.name} ({where}) and has a "
                     f"namespace {namespace} of its own: its local Services there can no longer be resolved",
                     subjects, fix=f"rename namespace {namespace} on one side; shared namespaces should "
                                   "have globally unique names")
        if target.namespaces and namespace not in target.namespaces:
            self.add("R5", Severity.WARNING,
                     f"cluster {client.name} forwards {zone} to {target.name} ({where}), which has no "
                     f"namespace {namespace}: every name in it answers NXDOMAIN",
                     subjects, fix=f"create namespace {namespace} in {target.name} or fix the forward")

    def forward_dns_reachable(self, client: Cluster, target: Cluster, zone: str, where: str) -> None:
        subjects = [client.name, target.name]
        endpoints = target.dns.endpoints if target.dns else ()
        involved = [Involved(target.name, Role.PODS, str(e.ip), self.where(e)) for e in endpoints]
        if not self.any_path.connected(client.name, target.name):
            self.add("R8", Severity.ERROR,
                     f"cluster {client.name} forwards {zone} to {target.name} ({where}), but no link "
                     f"joins them: {target.name}'s DNS endpoints are unreachable",
                     subjects, involved,
                     fix=f"add a link (peering, VPN or hub) between {client.name} and {target.name}")
        elif not endpoints:
            self.add("R8", Severity.WARNING,
                     f"cluster {client.name} forwards {zone} to {target.name} ({where}), but the plan "
                     f"does not list {target.name}'s DNS endpoints, so they cannot be checked",
                     subjects, fix=f"add dns.endpoints to {target.name} (kubectl -n kube-system get "
                                   "endpoints kube-dns), or discover it with --context")
        elif target.networking is Networking.OVERLAY:
            hidden = [e for e in endpoints if any(e.ip in r.network for r in target.pods)]
            if hidden:
                self.add("R8", Severity.ERROR,
                         f"{target.name}'s DNS endpoints {', '.join(str(e) for e in hidden)} are overlay "
                         f"pods, which cluster {client.name} cannot reach",
                         subjects, [Involved(target.name, Role.PODS, str(e.ip), self.where(e)) for e in hidden],
                         fix=f"expose {target.name}'s DNS on a routable address (an internal load "
                             "balancer) and forward to that")

    # --- R8 inside each cluster ------------------------------------------------------------

    def cluster_dns(self) -> None:
        for cluster in self.plan.clusters:
            if cluster.dns is None:
                continue
            service = cluster.dns.service
            if service is not None and cluster.services and \
                    not any(service.ip in r.network for r in cluster.services):
                self.add("R8", Severity.ERROR,
                         f"DNS Service IP {service} of cluster {cluster.name} is outside its Service "
                         f"ranges {', '.join(str(r) for r in cluster.services)}",
                         [cluster.name],
                         [Involved(cluster.name, Role.SERVICES, str(service.ip), self.where(service))],
                         fix="correct dns.service or the Service ranges (kubectl -n kube-system get svc)")
            routed = (*cluster.nodes, *cluster.pods)
            if not routed:
                continue
            for endpoint in cluster.dns.endpoints:
                if not any(endpoint.ip in r.network for r in routed):
                    self.add("R8", Severity.ERROR,
                             f"DNS endpoint {endpoint} of cluster {cluster.name} is outside its node and "
                             "pod ranges",
                             [cluster.name],
                             [Involved(cluster.name, Role.PODS, str(endpoint.ip), self.where(endpoint))],
                             fix="correct dns.endpoints or the node/pod ranges "
                                 "(kubectl -n kube-system get endpoints kube-dns)")

    # --- R7: IPv6 --------------------------------------------------------------------------

    def ipv6(self) -> None:
        for cluster in self.plan.clusters:
            self.ipv6_per_node(cluster)
        for link in self.plan.links:
            members = [self.clusters[m] for m in link.between if m in self.clusters]
            if len(members) >= 2:
                self.ipv6_families(link, members)
                self.ipv6_scopes(link, members)

    def ipv6_per_node(self, cluster: Cluster) -> None:
        pods = [r for r in cluster.pods if r.network.version == 6]
        if not pods:
            return
        configured = cluster.per_node_prefix.ipv6
        widest = min(r.network.prefixlen for r in pods)
        if configured is not None and configured < widest:
            self.add("R7", Severity.ERROR,
                     f"cluster {cluster.name} gives each node a /{configured} of pods, larger than its "
                     f"IPv6 pod ranges (/{widest}): not even one node fits",
                     [cluster.name], [Involved(cluster.name, Role.PODS, str(r), self.where(r)) for r in pods])
            return
        per_node = configured if configured is not None else max(r.network.prefixlen for r in pods)
        how = "gives each node" if configured is not None else "has IPv6 pod ranges so small that a node gets at most"
        involved = [Involved(cluster.name, Role.PODS, str(r), self.where(r)) for r in pods]
        if per_node > 80:
            self.add("R7", Severity.ERROR,
                     f"cluster {cluster.name} {how} a /{per_node}: Docker-style allocation needs at "
                     "least a /80 per node", [cluster.name], involved,
                     fix="use a /64 per node (a /80 at the very least)")
        elif per_node > 64:
            self.add("R7", Severity.WARNING,
                     f"cluster {cluster.name} {how} a /{per_node}: less than the /64 per node that "
                     "IPv6 tooling (SLAAC, neighbour discovery) expects", [cluster.name], involved,
                     fix="use a /64 per node")

    def ipv6_families(self, link: Link, members: list[Cluster]) -> None:
        families = {m.name: m.families() for m in members}
        union = frozenset().union(*families.values())
        for member in members:
            missing = sorted(union - families[member.name])
            if missing and families[member.name]:
                names = " and ".join(f"IPv{v}" for v in missing)
                others = [m.name for m in members if m is not member and families[m.name] & set(missing)]
                self.add("R7", Severity.WARNING,
                         f"link {link.label()}: cluster {member.name} has no {names} ranges but "
                         f"{', '.join(others)} do: {names} traffic between them cannot flow",
                         [member.name, *others],
                         fix=f"make {member.name} dual-stack too, or keep cross-cluster traffic on the "
                             "families every member has")

    def ipv6_scopes(self, link: Link, members: list[Cluster]) -> None:
        scopes: dict[str, set[str]] = {}
        for member in members:
            for r in (*member.nodes, *member.pods):
                scope = _ipv6_scope(r.network)
                if scope is not None:
                    scopes.setdefault(scope, set()).add(member.name)
        if len(scopes) > 1:
            ula, global_ = sorted(scopes["ULA"]), sorted(scopes["global"])
            self.add("R7", Severity.WARNING,
                     f"link {link.label()} mixes ULA IPv6 ({', '.join(ula)}) with global IPv6 "
                     f"({', '.join(global_)}): ULA addresses are not routed on the Internet, global "
                     "ones need ACLs, and source address selection prefers like with like",
                     [*ula, *global_],
                     fix="use one scope on a link: ULA over private links, or global prefixes with ACLs")

    # --- R10: topology ---------------------------------------------------------------------

    def topology(self) -> None:
        names = [c.name for c in self.plan.clusters]
        n = len(names)
        if n < 2:
            return
        declared = link_count(self.plan.links)
        self.add("R10", Severity.INFO,
                 f"{n} clusters: a full mesh needs {_links(n * (n - 1) // 2)}, hub-and-spoke "
                 f"{_links(n - 1)} ({n} spokes to a separate transit hub); this plan declares "
                 f"{_links(declared)}",
                 names, fix="prefer a hub (transit gateway) as the number of clusters grows")
        if not self.plan.links:
            self.add("R10", Severity.INFO,
                     "the plan declares no links, so paths between clusters are not checked",
                     names, fix="add links: (peering, vpn or hub) to check paths, DNS reachability and NAT")
            return
        groups = self.any_path.groups(names)
        if len(groups) > 1:
            sizes = [len(g) for g in groups]
            pairs = (sum(sizes) ** 2 - sum(s * s for s in sizes)) // 2
            shown = " | ".join("{" + ", ".join(g) + "}" for g in groups)
            self.add("R10", Severity.WARNING,
                     f"{pairs} pairs of clusters have no path between them; clusters reach each other "
                     f"only within these groups: {shown}",
                     names, fix="link the groups (one link between any two of them joins the groups)")

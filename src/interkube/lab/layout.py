"""What a lab is made of, computed from an address plan without touching anything.

A plan (docs/netplan.md) says which ranges each cluster uses and how the clusters are linked;
:func:`layout` turns it into network namespaces, veth pairs, addresses, routes and nftables
rules, and into the pods and Services the lab's DNS servers answer for. Nothing here needs
root: :mod:`interkube.lab.build` carries the layout out.

The shape, for each cluster of the plan:

* a *router* namespace with a bridge ``br0`` holding the first address of the cluster's node
  range; routes to the other members of the plan go over one veth per link (``w<N>``);
* one or two *node* namespaces on that bridge (the next addresses of the node range), each with
  a block of the pod range (the plan's ``per_node_prefix``, else /24 and /64);
* a namespace per *pod* on a veth from its node, addressed as Calico does it: the pod's
  address as a /32 (/128), a default route to 169.254.1.1 (fe80::1) that the node answers by
  proxy ARP (owns), and a host route on the node;
* ``routed`` clusters: the router routes each pod address to its node, and other members
  route the cluster's node and pod ranges to the router. ``overlay`` clusters: pods reach
  across nodes through a VXLAN between the node namespaces (VNI 1, UDP 4789) and leave the
  cluster behind their node's address (masquerade); other members learn only the node range;
* on every node the stand-in for kube-proxy, an nftables table ``ikl_node``: each Service VIP
  DNATed to its pods, and anything else sent toward the Service range dropped and counted
  (``vip_black_hole``): the rule that swallows a reply in the scenario *Addressing rules and
  VIP black holes* (docs/scenarios.md).

External networks get one namespace each, holding their addresses on ``lo``; a ``hub`` link is a
namespace of its own with a veth to every member. Links between routers use 169.254.64.0/18
(scope link, so no packet leaves with one as its source) and fe80::1 / fe80::2.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from interkube.errors import LabError
from interkube.netplan.model import Cluster, IPAddress, IPNetwork, LinkKind, Networking, Plan

#: Every name the lab gives (namespaces, and the state's instance) starts with this.
PREFIX = "ikl"
#: Ports of the lab's workloads.
DNS_PORT = 53
DOT_PORT = 853
STATEFUL_PORT = 8091
WEB_PORT = 80
#: The namespace that holds the web Service in every cluster (scenario: Discovery across
#: clusters, `web.shop.svc.cluster.<name>`).
APP_NAMESPACE = "shop"
#: The stateful set of the scenario Forwarded DNS between clusters.
STATEFUL_SET = "cb-example"
STATEFUL_SERVICE = "cb-example-srv"
STATEFUL_PORT_NAME = "couchbase"
STATEFUL_REPLICAS = 3
#: The "public" DNS zone of the split DNS scenario: cb-example-N.<cluster>.PUBLIC_ZONE.
PUBLIC_ZONE = "db.example"
#: The router's table for the public addresses (the proxy's are ``interkube``).
ROUTER_TABLE = "ikl_router"
#: The pods' gateways, answered by their node (proxy ARP for IPv4, an address for IPv6).
POD_GATEWAY = {4: "169.254.1.1", 6: "fe80::1"}
#: The kube-proxy stand-in's table on every node.
NODE_TABLE = "ikl_node"
VXLAN_ID = 1
VXLAN_PORT = 4789


@dataclass
class Pod:
    """One pod namespace (or the host namespace of an external network: ``host``)."""

    name: str
    namespace: str
    netns: str
    node: int
    addresses: list[str]
    role: str  # dns, client, stateful, web, host
    hostname: str | None = None
    port: int | None = None  # where its TCP server listens, if it has one


@dataclass
class Service:
    name: str
    namespace: str
    cluster_ips: list[str]  # empty: headless
    port_name: str
    port: int
    protocols: list[str]
    pods: list[str]
    #: The ready endpoints' addresses (the pods', or a node's for a hostNetwork pod).
    addresses: list[str] = field(default_factory=list)


@dataclass
class Node:
    netns: str
    addresses: list[str]
    pod_blocks: list[str]


@dataclass
class ClusterLab:
    """One cluster as built: what tests and the doctor need to address it."""

    name: str
    networking: str
    router: str
    router_addresses: list[str]
    nodes: list[Node]
    pods: dict[str, Pod]
    services: list[Service]
    node_ranges: list[str]
    pod_ranges: list[str]
    service_ranges: list[str]
    #: Where the cluster's DNS server listens: a pod (routed) or node 0 (overlay: hostNetwork,
    #: the only address other clusters can reach).
    dns_netns: str
    dns_addresses: list[str]
    dns_service: list[str]
    stateful_namespace: str
    #: Namespaces forwarded elsewhere: namespace -> cluster (the plan's ``forward``).
    forward: dict[str, str] = field(default_factory=dict)
    #: Clusters whose Service VIPs this cluster's router proxies (links with ``service_proxy``).
    proxied: list[str] = field(default_factory=list)
    #: The StatefulSet members' "public" addresses (routed clusters): a load balancer on the
    #: router, DNATed to the pod; the public zone PUBLIC_ZONE names them (split DNS scenario).
    public: dict[str, str] = field(default_factory=dict)

    def pod(self, name: str) -> Pod:
        try:
            return self.pods[name]
        except KeyError:
            raise LabError(f"cluster {self.name} has no pod {name!r}; it has {', '.join(self.pods)}") from None


@dataclass
class ExternalLab:
    name: str
    netns: str
    addresses: list[str]
    cidrs: list[str]


@dataclass
class Wire:
    """A veth between two routers (or a router and a hub); ``a``/``b`` are namespaces."""

    index: int
    a: str
    b: str
    a_name: str
    b_name: str
    link: str  # the plan's link label
    members: tuple[str, str]  # the plan members (or hub) at each end


@dataclass
class Layout:
    """Everything :mod:`interkube.lab.build` creates, in the order it creates it."""

    lab_id: str
    namespaces: list[str] = field(default_factory=list)
    #: (namespace a, name a, namespace b, name b) veth pairs.
    veths: list[tuple[str, str, str, str]] = field(default_factory=list)
    #: ``ip -batch`` lines per namespace.
    commands: dict[str, list[str]] = field(default_factory=dict)
    #: /proc/sys/net paths (relative) -> value per namespace; set before the links come up.
    sysctls: dict[str, dict[str, str]] = field(default_factory=dict)
    #: nftables ruleset per namespace.
    nft: dict[str, str] = field(default_factory=dict)
    clusters: dict[str, ClusterLab] = field(default_factory=dict)
    external: dict[str, ExternalLab] = field(default_factory=dict)
    wires: list[Wire] = field(default_factory=list)
    hubs: dict[str, str] = field(default_factory=dict)  # hub name -> namespace
    families: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Layout:
        clusters = {}
        for name, c in data["clusters"].items():
            c = dict(c)
            c["nodes"] = [Node(**n) for n in c["nodes"]]
            c["pods"] = {k: Pod(**p) for k, p in c["pods"].items()}
            c["services"] = [Service(**s) for s in c["services"]]
            clusters[name] = ClusterLab(**c)
        return cls(
            lab_id=data["lab_id"], namespaces=list(data["namespaces"]),
            veths=[(v[0], v[1], v[2], v[3]) for v in data["veths"]],
            commands=data["commands"], sysctls=data["sysctls"], nft=data["nft"], clusters=clusters,
            external={k: ExternalLab(**e) for k, e in data["external"].items()},
            wires=[Wire(**{**w, "members": tuple(w["members"])}) for w in data["wires"]],
            hubs=data["hubs"], families=list(data["families"]))


def netns_name(lab_id: str, *parts: str) -> str:
    return "-".join((PREFIX, lab_id, *parts))


def _first(ranges: list[IPNetwork], version: int) -> IPNetwork | None:
    return next((r for r in ranges if r.version == version), None)


def _host(network: IPNetwork, index: int, what: str) -> IPAddress:
    if index >= network.num_addresses:
        raise LabError(f"{what} {network} is too small for the lab (it needs address {index})")
    return network[index]


def _with_len(address: IPAddress | str) -> str:
    ip = ipaddress.ip_address(address)
    return f"{ip}/{ip.max_prefixlen}"


def _transit(index: int, version: int, side: int) -> str:
    """Side 0 or 1 of wire ``index``: 169.254.64.0/18 cut into /30s, or fe80::1 / fe80::2."""
    if version == 6:
        return f"fe80::{side + 1}"
    base = int(ipaddress.IPv4Address("169.254.64.0")) + index * 4
    if index >= 4096:
        raise LabError("too many links for the lab's transit addresses")
    return str(ipaddress.IPv4Address(base + 1 + side))


def layout(plan: Plan, lab_id: str, *, nodes: int = 2) -> Layout:
    """The lab for ``plan``; refuses what it cannot build (NAT links, clusters without ranges)."""
    if nodes not in (1, 2):
        raise LabError("a lab cluster has one or two nodes")
    for link in plan.links:
        if link.nat:
            raise LabError(f"link {link.label()}: the lab does not build address translation between "
                           f"members (nat: true); check the plan with `interkube check` instead")
    out = Layout(lab_id=lab_id)
    families: list[int] = sorted({r.network.version for c in plan.clusters for r in c.nodes}
                      | {r.network.version for e in plan.external for r in e.cidrs})
    out.families = families
    routers: dict[str, str] = {}
    local_prefixes: dict[str, list[IPNetwork]] = {}
    advertised: dict[str, list[IPNetwork]] = {}
    for cluster in plan.clusters:
        built = _cluster(out, plan, cluster, nodes)
        routers[cluster.name] = built.router
        own = [*map(_net, built.node_ranges), *map(_net, built.pod_ranges)]
        local_prefixes[cluster.name] = own
        advertised[cluster.name] = own if built.networking == Networking.ROUTED.value \
            else [*map(_net, built.node_ranges)]
    for ext in plan.external:
        ns = netns_name(lab_id, ext.name)
        out.namespaces.append(ns)
        addresses = []
        cmds = ["link set lo up"]
        for r in ext.cidrs:
            net = r.network
            host = net[0] if net.num_addresses == 1 else net[1]
            addresses.append(str(host))
            cmds.append(f"addr add {host}/{net.prefixlen} dev lo" + (" nodad" if net.version == 6 else ""))
        out.commands[ns] = cmds
        out.sysctls[ns] = {**_base_sysctls(), **_forwarding()}
        out.external[ext.name] = ExternalLab(ext.name, ns, addresses, [str(r.network) for r in ext.cidrs])
        routers[ext.name] = ns
        local_prefixes[ext.name] = [r.network for r in ext.cidrs]
        advertised[ext.name] = [r.network for r in ext.cidrs]
    _links(out, plan, routers, local_prefixes, advertised)
    for link in plan.links:
        if link.service_proxy:
            members = [m for m in link.between if m in out.clusters]
            for name in members:
                out.clusters[name].proxied += [m for m in members if m != name and m not in out.clusters[name].proxied]
    return out


def _net(text: str) -> IPNetwork:
    return ipaddress.ip_network(text)


def _forwarding() -> dict[str, str]:
    return {"ipv4/ip_forward": "1", "ipv6/conf/all/forwarding": "1", "ipv6/conf/default/forwarding": "1"}


def _base_sysctls() -> dict[str, str]:
    # Addresses are usable at once (no duplicate detection: every address here is ours), and
    # no reverse-path filter: paths between clusters may be asymmetric through a hub.
    return {"ipv6/conf/all/accept_dad": "0", "ipv6/conf/default/accept_dad": "0",
            "ipv4/conf/all/rp_filter": "0", "ipv4/conf/default/rp_filter": "0"}


def _nodad(address: IPAddress | str) -> str:
    return " nodad" if ipaddress.ip_address(address).version == 6 else ""


def _cluster(out: Layout, plan: Plan, cluster: Cluster, node_count: int) -> ClusterLab:
    lab_id = out.lab_id
    name = cluster.name
    node_ranges = [r.network for r in cluster.nodes]
    pod_ranges = [r.network for r in cluster.pods]
    service_ranges = [r.network for r in cluster.services]
    versions: list[int] = sorted({n.version for n in node_ranges})
    if not versions:
        raise LabError(f"cluster {name} has no node range")
    overlay = cluster.networking is Networking.OVERLAY
    router = netns_name(lab_id, name, "router")
    node_ns = [netns_name(lab_id, name, f"node{k}") for k in range(node_count)]
    out.namespaces += [router, *node_ns]
    router_addr: dict[int, IPAddress] = {}
    node_addr: list[dict[int, IPAddress]] = [{} for _ in range(node_count)]
    blocks: list[dict[int, IPNetwork]] = [{} for _ in range(node_count)]
    for v in versions:
        nodes_net = _first(node_ranges, v)
        assert nodes_net is not None
        router_addr[v] = _host(nodes_net, 1, f"node range of cluster {name}")
        for k in range(node_count):
            node_addr[k][v] = _host(nodes_net, 2 + k, f"node range of cluster {name}")
        pods_net = _first(pod_ranges, v)
        if pods_net is None:
            raise LabError(f"cluster {name} has IPv{v} nodes but no IPv{v} pod range")
        prefix = cluster.per_node_prefix.for_version(v) or (24 if v == 4 else 64)
        if prefix <= pods_net.prefixlen:
            prefix = min(pods_net.prefixlen + 2, pods_net.max_prefixlen - 2)
        taken = {router_addr[v], *(node_addr[k][v] for k in range(node_count))}
        found = []
        for block in pods_net.subnets(new_prefix=prefix):
            if not any(a in block for a in taken):
                found.append(block)
            if len(found) == node_count:
                break
        if len(found) < node_count:
            raise LabError(f"pod range {pods_net} of cluster {name} has no room for {node_count} node blocks")
        for k in range(node_count):
            blocks[k][v] = found[k]

    # The pods, spread over the nodes in turn.
    stateful_ns = next((f.namespace for c in plan.clusters for f in c.forward if f.to == name), APP_NAMESPACE)
    specs: list[tuple[str, str, str, str | None, int | None]] = []  # name, namespace, role, hostname, port
    if not overlay:
        specs.append(("dns", "kube-system", "dns", None, DNS_PORT))
    specs.append(("client", "default", "client", None, None))
    specs += [(f"{STATEFUL_SET}-{i}", stateful_ns, "stateful", f"{STATEFUL_SET}-{i}", STATEFUL_PORT)
              for i in range(STATEFUL_REPLICAS)]
    specs += [(f"web-{i}", APP_NAMESPACE, "web", None, WEB_PORT) for i in range(2)]
    dns_endpoints = {a.ip.version: a.ip for a in (cluster.dns.endpoints if cluster.dns else ())}
    next_host = [dict.fromkeys(versions, 2) for _ in range(node_count)]
    pods: dict[str, Pod] = {}
    for i, (pod_name, namespace, role, hostname, port) in enumerate(specs):
        k = i % node_count
        addrs = []
        for v in versions:
            if role == "dns" and v in dns_endpoints:
                addrs.append(str(dns_endpoints[v]))
                continue
            while True:
                ip = _host(blocks[k][v], next_host[k][v], f"pod block of cluster {name}")
                next_host[k][v] += 1
                if ip not in dns_endpoints.values():
                    break
            addrs.append(str(ip))
        ns = netns_name(lab_id, name, pod_name)
        out.namespaces.append(ns)
        pods[pod_name] = Pod(pod_name, namespace, ns, k, addrs, role, hostname, port)

    # Services: the DNS Service, the headless set, a ClusterIP web Service.
    def vip(v: int, index: int) -> str | None:
        net = _first(service_ranges, v)
        return str(_host(net, index, f"Service range of cluster {name}")) if net else None

    dns_service = [str(a.ip) for a in ((cluster.dns.service,) if cluster.dns and cluster.dns.service else ())]
    if not dns_service:
        dns_service = [x for x in (vip(v, 10) for v in versions) if x]
    dns_netns = pods["dns"].netns if not overlay else node_ns[0]
    dns_addresses = pods["dns"].addresses if not overlay else [str(node_addr[0][v]) for v in versions]

    def backing(role: str) -> tuple[list[str], list[str]]:
        names = [p for p in pods if pods[p].role == role]
        return names, [a for p in names for a in pods[p].addresses]

    services = [
        Service("kube-dns", "kube-system", dns_service, "dns", DNS_PORT, ["UDP", "TCP"],
                *(backing("dns") if not overlay else ([], dns_addresses))),
        Service(STATEFUL_SERVICE, stateful_ns, [], STATEFUL_PORT_NAME, STATEFUL_PORT, ["TCP"], *backing("stateful")),
        Service("web", APP_NAMESPACE, [x for x in (vip(v, 100) for v in versions) if x], "http", WEB_PORT,
                ["TCP"], *backing("web")),
    ]
    built = ClusterLab(
        name=name, networking=cluster.networking.value, router=router,
        router_addresses=[str(router_addr[v]) for v in versions],
        nodes=[Node(node_ns[k], [str(node_addr[k][v]) for v in versions], [str(blocks[k][v]) for v in versions])
               for k in range(node_count)],
        pods=pods, services=services, node_ranges=[str(n) for n in node_ranges],
        pod_ranges=[str(n) for n in pod_ranges], service_ranges=[str(n) for n in service_ranges],
        dns_netns=dns_netns, dns_addresses=dns_addresses, dns_service=dns_service,
        stateful_namespace=stateful_ns, forward={f.namespace: f.to for f in cluster.forward})
    out.clusters[name] = built

    # Router: a bridge for the node network, a host route to each routed pod.
    cmds = ["link set lo up", "link add br0 type bridge", "link set br0 up"]
    for v in versions:
        cmds.append(f"addr add {router_addr[v]}/{_first(node_ranges, v).prefixlen} dev br0"  # type: ignore[union-attr]
                    + _nodad(router_addr[v]))
    for k in range(node_count):
        out.veths.append((router, f"n{k}", node_ns[k], "eth0"))
        cmds += [f"link set n{k} master br0", f"link set n{k} up"]
    if not overlay:
        for pod in pods.values():
            for a in pod.addresses:
                v = ipaddress.ip_address(a).version
                cmds.append(f"route replace {_with_len(a)} via {node_addr[pod.node][v]}")
    if not overlay:
        # The members' public addresses: the last of the node range (advertised to everyone),
        # held by the router, which DNATs them to the pods (and masquerades, so that a pod of the
        # same cluster dialing one gets its answer back through the router: hairpin traffic).
        nodes_net = _first(node_ranges, versions[0])
        assert nodes_net is not None
        members = [p for p in pods.values() if p.role == "stateful"]
        last = nodes_net.num_addresses - (2 if nodes_net.version == 4 else 1)
        for i, pod in enumerate(members):
            built.public[pod.name] = str(_host(nodes_net, last - i, f"node range of cluster {name}"))
            cmds.append(f"addr add {_with_len(built.public[pod.name])} dev br0" + _nodad(built.public[pod.name]))
        out.nft[router] = _router_rules(built, versions[0])
    out.commands[router] = cmds
    out.sysctls[router] = {**_base_sysctls(), **_forwarding()}

    # Nodes.
    for k in range(node_count):
        ns = node_ns[k]
        cmds = ["link set lo up", "link set eth0 up"]
        sysctls = {**_base_sysctls(), **_forwarding()}
        for v in versions:
            # A host address and a route to the router alone: where pods share the node range
            # (cloud CNIs), a connected node range would send pod traffic to the wrong link.
            cmds.append(f"addr add {_with_len(node_addr[k][v])} dev eth0" + _nodad(node_addr[k][v]))
            cmds.append(f"route add {_with_len(router_addr[v])} dev eth0")
            cmds.append(f"route add default via {router_addr[v]}")
        for j, pod in enumerate(p for p in pods.values() if p.node == k):
            dev = f"p{j}"
            out.veths.append((ns, dev, pod.netns, "eth0"))
            cmds.append(f"link set {dev} up")
            if 6 in versions:
                cmds.append(f"addr add {POD_GATEWAY[6]}/64 dev {dev} nodad")
            sysctls[f"ipv4/conf/{dev}/proxy_arp"] = "1"
            for a in pod.addresses:
                cmds.append(f"route add {_with_len(a)} dev {dev}")
            pcmds = ["link set lo up", "link set eth0 up"]
            for a in pod.addresses:
                v = ipaddress.ip_address(a).version
                pcmds.append(f"addr add {_with_len(a)} dev eth0" + _nodad(a))
                pcmds.append(f"route add default via {POD_GATEWAY[v]} dev eth0" + (" onlink" if v == 4 else ""))
            out.commands[pod.netns] = pcmds
            out.sysctls[pod.netns] = _base_sysctls()
        if overlay and node_count > 1:
            other = 1 - k
            v = versions[0]
            cmds.append(f"link add vx0 type vxlan id {VXLAN_ID} local {node_addr[k][v]} remote "
                        f"{node_addr[other][v]} dstport {VXLAN_PORT} dev eth0")
            cmds += [f"link set vx0 address {_mac(name, k)}", "link set vx0 up"]
            for v in versions:
                mine, theirs = blocks[k][v], blocks[other][v]
                cmds.append(f"addr add {_with_len(mine[1])} dev vx0" + _nodad(mine[1]))
                cmds.append(f"neigh add {theirs[1]} lladdr {_mac(name, other)} dev vx0 nud permanent")
                cmds.append(f"route add {theirs} via {theirs[1]} dev vx0 onlink")
        out.commands[ns] = cmds
        out.sysctls[ns] = sysctls
        out.nft[ns] = _node_rules(built, versions, overlay)
    return built


def _mac(cluster: str, node: int) -> str:
    digest = sum(cluster.encode()) & 0xFF
    return f"02:1b:00:{digest:02x}:00:{node + 1:02x}"


def _router_rules(cluster: ClusterLab, version: int) -> str:
    family = "ip" if version == 4 else "ip6"
    lines = [f"table {family} {ROUTER_TABLE} {{", "  chain public {",
             "    type nat hook prerouting priority dstnat; policy accept;"]
    targets = []
    for pod, public in cluster.public.items():
        target = _of_version(cluster.pods[pod].addresses, version)
        targets.append(target)
        lines.append(f"    {family} daddr {public} tcp dport {STATEFUL_PORT} dnat to {target}")
    lines += ["  }", "  chain hairpin {", "    type nat hook postrouting priority srcnat; policy accept;",
              f"    ct status dnat {family} daddr {{ {', '.join(targets)} }} tcp dport {STATEFUL_PORT} masquerade",
              "  }", "}"]
    return "\n".join(lines) + "\n"


def _of_version(addresses: list[str], version: int) -> str:
    return next(a for a in addresses if ipaddress.ip_address(a).version == version)


def _node_rules(cluster: ClusterLab, versions: list[int], overlay: bool) -> str:
    """The kube-proxy stand-in: Service VIPs DNATed to their pods, the rest of the Service range
    dropped and counted; overlay nodes masquerade pod traffic that leaves the pod network."""
    lines: list[str] = []
    for v in versions:
        family, match = ("ip", "ip") if v == 4 else ("ip6", "ip6")
        lines += [f"table {family} {NODE_TABLE} {{", "  chain services {",
                  "    type nat hook prerouting priority dstnat; policy accept;"]
        for svc in cluster.services:
            targets = [a for a in svc.addresses if ipaddress.ip_address(a).version == v]
            for vip in svc.cluster_ips:
                if ipaddress.ip_address(vip).version != v or not targets:
                    continue
                mapping = ", ".join(f"{i} : {t}" for i, t in enumerate(targets))
                for proto in svc.protocols:
                    lines.append(f"    {match} daddr {vip} {proto.lower()} dport {svc.port} "
                                 f"dnat to numgen random mod {len(targets)} map {{ {mapping} }}")
        lines += ["  }", "  chain vip_black_hole {", "    type filter hook forward priority filter; policy accept;"]
        for r in cluster.service_ranges:
            if ipaddress.ip_network(r).version == v:
                lines.append(f"    {match} daddr {r} counter drop comment \"Service range {r}\"")
        lines.append("  }")
        pods = [r for r in cluster.pod_ranges if ipaddress.ip_network(r).version == v]
        if overlay and pods:
            lines += ["  chain pod_masquerade {", "    type nat hook postrouting priority srcnat; policy accept;"]
            for r in pods:
                lines.append(f"    {match} saddr {r} {match} daddr != {r} oifname \"eth0\" masquerade")
            lines.append("  }")
        lines.append("}")
    return "\n".join(lines) + "\n"


def _links(out: Layout, plan: Plan, routers: dict[str, str], local: dict[str, list[IPNetwork]],
           advertised: dict[str, list[IPNetwork]]) -> None:
    """Wires between routers (a hub is a router of its own) and the routes over them."""
    graph: dict[str, list[tuple[str, Wire, int]]] = {name: [] for name in routers}
    hub_count = 0
    for link in plan.links:
        members = list(link.between)
        if link.kind is LinkKind.HUB:
            hub = f"hub{hub_count}"
            hub_count += 1
            ns = netns_name(out.lab_id, hub)
            out.namespaces.append(ns)
            out.hubs[hub] = ns
            routers[hub] = ns
            graph[hub] = []
            out.commands[ns] = ["link set lo up"]
            out.sysctls[ns] = {**_base_sysctls(), **_forwarding()}
            pairs = [(hub, m) for m in members]
        else:
            pairs = [(members[0], members[1])]
        for a, b in pairs:
            index = len(out.wires)
            wire = Wire(index, routers[a], routers[b], f"w{index}", f"w{index}", link.label(), (a, b))
            out.wires.append(wire)
            out.veths.append((wire.a, wire.a_name, wire.b, wire.b_name))
            graph[a].append((b, wire, 0))
            graph[b].append((a, wire, 1))
    for wire in out.wires:
        for side, (ns, dev) in enumerate(((wire.a, wire.a_name), (wire.b, wire.b_name))):
            cmds = out.commands.setdefault(ns, [])
            cmds.append(f"link set {dev} up")
            for v in out.families:
                addr = _transit(wire.index, v, side)
                cmds.append(f"addr add {addr}/{30 if v == 4 else 64} dev {dev} scope link" + _nodad(addr))
    members = [m for m in routers if m in advertised]
    for start in routers:
        first_hop = _first_hops(start, graph)
        own = local.get(start, [])
        cmds = out.commands.setdefault(routers[start], [])
        for member in members:
            if member == start or member not in first_hop:
                continue
            wire, side = first_hop[member]
            dev = wire.a_name if side == 0 else wire.b_name
            for prefix in dict.fromkeys(advertised[member]):
                if prefix in own or prefix.version not in out.families:
                    continue  # a plan that reuses a range: the router's own network wins, as it would
                cmds.append(f"route replace {prefix} via {_transit(wire.index, prefix.version, 1 - side)} dev {dev}")


def _first_hops(start: str, graph: dict[str, list[tuple[str, Wire, int]]]) -> dict[str, tuple[Wire, int]]:
    """For every vertex reachable from ``start``: the wire (and ``start``'s side of it) of a
    shortest path's first hop."""
    hops: dict[str, tuple[Wire, int]] = {}
    seen = {start}
    queue: deque[tuple[str, tuple[Wire, int] | None]] = deque([(start, None)])
    while queue:
        vertex, hop = queue.popleft()
        for other, wire, side in graph[vertex]:
            if other in seen:
                continue
            seen.add(other)
            first = hop or (wire, side)
            hops[other] = first
            queue.append((other, first))
    return hops

"""What the proxy programs: remote Service ports, and the nftables text that makes them live.

The table follows kube-proxy's nftables mode (one table per family, ``ip interkube`` and ``ip6
interkube``)::

    map service-ips            { VIP . proto . port : goto svc-... }     one element per Service port
    map no-endpoint-services   { VIP . proto . port : goto reject-chain } ports without ready endpoints
    chain services             ip daddr . meta l4proto . th dport vmap @service-ips
    chain mark-proxied         meta mark set meta mark | MARK ct mark set ct mark | MARK
    chain svc-HASH-cluster/ns/name/proto/port                             one chain per Service port
        jump mark-proxied
        ip saddr @aff-HASH-A update @aff-HASH-A { ip saddr } meta l4proto tcp dnat to A
                                                 (sessionAffinity ClientIP, one per endpoint)
        numgen random mod 3 == 0 [update @aff-HASH-A { ip saddr }] meta l4proto tcp dnat to A
        numgen random mod 2 == 0 [update ...] meta l4proto tcp dnat to B    one endpoint chosen
        [update ...] meta l4proto tcp dnat to C                             at random per connection
    base chains: nat prerouting/output -> services; filter input/forward/output (priority -110,
    new connections) -> no-endpoint-services; nat postrouting masquerades marked packets.

kube-proxy picks the endpoint with ``numgen random mod N vmap { 0 : goto ..., ... }`` into one
chain per endpoint; every such vmap is an anonymous set, and the kernel names each new anonymous
set by scanning the table's sets, so loading 10,000 of them took 59 s here against 2.9 s for the
same table written with a row of rules (same distribution: rule i matches with probability
1/(N-i) of what reaches it). The endpoints' DNATs sit in the Service's own chain rather than in a
chain each: nft (1.0.6) lists every chain of the host before any transaction that adds a rule or
an element, so the number of chains, not the size of the change, set the cost of an update (4
chains per Service: ~130 ms per change at 10,000 Services, against ~50 ms with one).

Chain and set names carry a hash of (cluster, namespace, Service, protocol, port name[, endpoint])
so that two clusters never share a name, and a readable tail (the cluster name itself when it is
short, its hash when it is long).

Changes are computed per element key (VIP, protocol, port): each key has a :class:`Contribution`
(its chains, affinity sets and map element), and :class:`Transaction` turns the old and new
contribution of every changed key into one ``nft -f`` file whose commands are ordered so that the
kernel accepts them in one batch (elements out, chains in, rules, elements in, chains out).
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from interkube.kube.index import ClusterIndex
from interkube.kube.objects import Service
from interkube.netplan.model import IPNetwork

TABLE = "interkube"
FAMILIES = {4: "ip", 6: "ip6"}
PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
SERVICE_MAP = "service-ips"
NO_ENDPOINTS_MAP = "no-endpoint-services"
REJECT_CHAIN = "reject-chain"
MARK_CHAIN = "mark-proxied"
#: A set that stays empty: flushing it is how an update asks nft for the table's sets (see
#: :class:`Transaction`).
ALWAYS_EMPTY = "always-empty"
#: nft allows 255 characters in a chain or set name; the readable tail is cut to stay well below.
_MAX_NAME = 200
#: Cluster names longer than this are shown as their hash in chain names.
_MAX_CLUSTER_TAG = 24

Key = tuple[str, str, int]            # (VIP, protocol, port), protocol as nft spells it
Skip = Callable[[str, str], None]     # (reason, "namespace/name")


@dataclass(frozen=True, slots=True)
class Backend:
    ip: str
    port: int

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


@dataclass(frozen=True, slots=True)
class ServicePort:
    """One Service port at one ClusterIP, with the ready endpoints behind it."""

    cluster: str
    namespace: str
    service: str
    port_name: str
    protocol: str                   # tcp, udp or sctp
    vip: str
    port: int
    endpoints: tuple[Backend, ...]
    affinity: int = 0               # ClientIP affinity timeout in seconds; 0: none

    @property
    def family(self) -> int:
        return 6 if ":" in self.vip else 4

    @property
    def key(self) -> Key:
        return (self.vip, self.protocol, self.port)

    @property
    def label(self) -> str:
        """``cluster/namespace/name:port`` (the port's name, or its number when unnamed)."""
        return f"{self.cluster}/{self.namespace}/{self.service}:{self.port_name or self.port}"


def service_ports(cluster: str, index: ClusterIndex, service: Service, cidrs: tuple[IPNetwork, ...],
                  skip: Skip) -> list[ServicePort]:
    """The ports ``service`` needs programmed (none for headless and ExternalName Services).

    A Service whose ports or ClusterIPs the proxy cannot program is skipped whole, reported
    through ``skip``: a protocol other than TCP, UDP and SCTP, a port outside 1-65535, or a
    ClusterIP outside the cluster's ``service_cidr`` ranges (when it has some).
    """
    if service.headless or service.is_external or not service.cluster_ips:
        return []
    ident = f"{service.namespace}/{service.name}"
    for p in service.ports:
        if p.protocol not in PROTOCOLS:
            skip("protocol", ident)
            return []
        if not 0 < p.port < 65536:
            skip("port", ident)
            return []
    if cidrs and not all(any(v.version == n.version and v in n for n in cidrs)
                         for v in map(ipaddress.ip_address, service.cluster_ips)):
        skip("outside service_cidr", ident)
        return []
    slices = index.slices(service.namespace, service.name)
    out: list[ServicePort] = []
    for vip_text in service.cluster_ips:
        vip, version, _ = _parsed(vip_text)
        for p in service.ports:
            backends: set[Backend] = set()
            for slice_ in slices:
                for sp in slice_.ports:
                    # The slice's port of the same name is the target port of these endpoints
                    # (a named targetPort may differ from one pod to another).
                    if sp.name != p.name or sp.protocol != p.protocol or not 0 < sp.port < 65536:
                        continue
                    for ep in slice_.endpoints:
                        if ep.ready and (":" in ep.ip) == (version == 6):
                            backends.add(Backend(_normal(ep.ip), sp.port))
            out.append(ServicePort(cluster, service.namespace, service.name, p.name, PROTOCOLS[p.protocol],
                                   vip, p.port, tuple(sorted(backends, key=_backend_order)),
                                   service.affinity_timeout))
    return out


@functools.lru_cache(maxsize=1 << 17)
def _parsed(text: str) -> tuple[str, int, int]:
    """An address in one spelling (inet_ntop's: one per IPv6 address), its version, and its sort
    key. The C parser rather than ``ipaddress`` (which parsed each octet in Python: 40% of a
    10,000-Service sync); addresses repeat in every sync of their Service, so once is enough."""
    family = socket.AF_INET6 if ":" in text else socket.AF_INET
    try:
        packed = socket.inet_pton(family, text)
    except OSError:
        raise ValueError(f"not an IP address: {text!r}") from None
    return socket.inet_ntop(family, packed), 6 if family == socket.AF_INET6 else 4, int.from_bytes(packed, "big")


def _normal(text: str) -> str:
    return _parsed(text)[0]


def _backend_order(b: Backend) -> tuple[int, int, int]:
    _, version, number = _parsed(b.ip)
    return (version, number, b.port)


# --- names -------------------------------------------------------------------------------------


def _hash(text: str) -> str:
    # 60 bits of BLAKE2b in hex (hashlib's C code: base64's b32encode is pure Python and was a
    # fifth of a 10,000-Service sync).
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()[:15].upper()


def cluster_tag(cluster: str) -> str:
    return cluster if len(cluster) <= _MAX_CLUSTER_TAG else "c" + _hash(cluster)[:8].lower()


def _name(prefix: str, identity: str, readable: str) -> str:
    # Only characters nft takes in an unquoted name ([a-zA-Z0-9/._-]); IPv6 colons become dots.
    readable = readable.replace(":", ".")
    return f"{prefix}-{_hash(identity)}-{readable}"[:_MAX_NAME]


def _port_identity(sp: ServicePort) -> tuple[str, str]:
    # The element key is part of the identity: the chains of a key are its own, so that one
    # key's chains going while another's come (a port renumbered) never meet in one batch.
    port = sp.port_name or str(sp.port)
    readable = f"{cluster_tag(sp.cluster)}/{sp.namespace}/{sp.service}/{sp.protocol}/{port}"
    return f"{sp.cluster}\0{sp.namespace}\0{sp.service}\0{sp.protocol}\0{port}\0{sp.vip}\0{sp.port}", readable


def service_chain(sp: ServicePort) -> str:
    identity, readable = _port_identity(sp)
    return _name("svc", identity, readable)


def affinity_set(sp: ServicePort, backend: Backend) -> str:
    """The set of clients that last went to ``backend``; the timeout is part of the identity
    (a set's timeout cannot change, so a new timeout is a new set)."""
    identity, _ = _port_identity(sp)
    return _name("aff", f"{identity}\0{backend}\0{sp.affinity}", "")[:-1]


# --- contributions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Element:
    map: str
    verdict: str
    comment: str


@dataclass(frozen=True)
class Contribution:
    """Everything one element key puts in its family's table."""

    element: Element
    chains: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sets: dict[str, int] = field(default_factory=dict)    # affinity set -> timeout (s)


def contribution(sp: ServicePort) -> Contribution:
    if not sp.endpoints:
        return Contribution(Element(NO_ENDPOINTS_MAP, f"goto {REJECT_CHAIN}", sp.label))
    saddr = "ip saddr" if sp.family == 4 else "ip6 saddr"
    dnat = f"meta l4proto {sp.protocol} dnat to"
    # Every packet that reaches the chain is proxied: the marks are set once, before the pick, by
    # a shared chain (one expression here instead of six: the kernel looks each expression's type
    # up by name, a sixth of a 10,000-Service load).
    chain = [f"jump {MARK_CHAIN}"]
    sets: dict[str, int] = {}
    pick: list[str] = []
    count = len(sp.endpoints)
    for i, backend in enumerate(sp.endpoints):
        update = ""
        if sp.affinity:
            aff = affinity_set(sp, backend)
            sets[aff] = sp.affinity
            update = f"update @{aff} {{ {saddr} }} "
            # A client seen within the timeout goes back to its endpoint (and stays another timeout).
            chain.append(f"{saddr} @{aff} {update}{dnat} {backend}")
        random = f"numgen random mod {count - i} == 0 " if i < count - 1 else ""
        pick.append(f"{random}{update}{dnat} {backend}")
    svc = service_chain(sp)
    return Contribution(Element(SERVICE_MAP, f"goto {svc}", sp.label), {svc: (*chain, *pick)}, sets)


def base_table(family: int, hooks: frozenset[str], masquerade: bool, mark: int) -> list[str]:
    """The table with its maps and base chains and nothing else, replacing any table of that name
    (``add`` then ``delete`` then ``add``: one batch, so there is no moment without a table)."""
    fam = FAMILIES[family]
    t = f"{fam} {TABLE}"
    addr, daddr = ("ipv4_addr", "ip daddr") if family == 4 else ("ipv6_addr", "ip6 daddr")
    lines = [
        f"add table {t}", f"delete table {t}", f"add table {t}",
        f"add map {t} {SERVICE_MAP} {{ {_map_type(family)} }}",
        f"add map {t} {NO_ENDPOINTS_MAP} {{ {_map_type(family)} }}",
        f"add set {t} {ALWAYS_EMPTY} {{ type {addr} ; }}",
        f"add chain {t} services",
        f"add rule {t} services {daddr} . meta l4proto . th dport vmap @{SERVICE_MAP}",
        f"add chain {t} no-endpoints",
        f"add rule {t} no-endpoints {daddr} . meta l4proto . th dport vmap @{NO_ENDPOINTS_MAP}",
        f"add chain {t} {MARK_CHAIN}",
        f"add rule {t} {MARK_CHAIN} meta mark set meta mark | {mark:#x} ct mark set ct mark | {mark:#x}",
        f"add chain {t} {REJECT_CHAIN}",
        f"add rule {t} {REJECT_CHAIN} meta l4proto tcp reject with tcp reset",
        f"add rule {t} {REJECT_CHAIN} reject",
    ]
    filters: list[str] = []
    if "prerouting" in hooks:
        lines += [f"add chain {t} nat-prerouting {{ type nat hook prerouting priority dstnat ; }}",
                  f"add rule {t} nat-prerouting jump services"]
        filters += ["input", "forward"]
    if "output" in hooks:
        lines += [f"add chain {t} nat-output {{ type nat hook output priority -100 ; }}",
                  f"add rule {t} nat-output jump services"]
        filters.append("output")
    for hook in filters:
        # Before the usual firewall (priority 0) and before nat output (-100), as kube-proxy.
        lines += [f"add chain {t} filter-{hook} {{ type filter hook {hook} priority -110 ; }}",
                  f"add rule {t} filter-{hook} ct state new jump no-endpoints"]
    if masquerade:
        lines += [f"add chain {t} nat-postrouting {{ type nat hook postrouting priority srcnat ; }}",
                  f"add rule {t} nat-postrouting meta mark & {mark:#x} == {mark:#x} masquerade"]
    return lines


def _map_type(family: int) -> str:
    addr = "ipv4_addr" if family == 4 else "ipv6_addr"
    return f"type {addr} . inet_proto . inet_service : verdict ;"


def delete_tables() -> str:
    """Remove both tables whether or not they exist (clean shutdown)."""
    return "".join(f"add table {fam} {TABLE}\ndelete table {fam} {TABLE}\n" for fam in FAMILIES.values())


def _element_key(key: Key) -> str:
    vip, protocol, port = key
    return f"{vip} . {protocol} . {port}"


class Transaction:
    """The commands that take a family's table from one set of contributions to another.

    Written so that the commonest update, a Service's endpoints changing, makes nft (1.0.6) load
    nothing of the table first: nft lists every chain of the host before a batch with an ``add
    rule``, an ``add element`` or any ``delete`` (its cache; ~40 ms at 10,000 chains, growing with
    them), but only the tables before ``add chain`` and ``add map``. So a chain is filled as
    ``add chain T NAME { RULE ; ... }`` (after ``flush chain``) and elements are added as ``add map
    T MAP { TYPE ; elements = { ... } }``. A rule that names an existing set (``@aff-...``) needs
    nft's list of sets: ``flush set T always-empty`` loads that and not the chains. Taking a
    Service or its last endpoint away still deletes an element and a chain, with the listing.
    """

    def __init__(self, family: int) -> None:
        self.family = family
        self.table = f"{FAMILIES[family]} {TABLE}"
        self.header: list[str] = []
        self.delete_elements: dict[str, list[str]] = {}
        self.add_sets: list[str] = []
        self.flush_chains: list[str] = []
        self.fill_chains: list[str] = []
        self.add_elements: dict[str, list[str]] = {}
        self.delete_chains: list[str] = []
        self.delete_sets: list[str] = []
        self.names_sets = False
        self.changes = 0

    def change(self, key: Key, old: Contribution | None, new: Contribution | None) -> None:
        if old == new:
            return
        self.changes += 1
        t = self.table
        if old is not None and old.element != (new.element if new else None):
            self.delete_elements.setdefault(old.element.map, []).append(_element_key(key))
        old_chains = old.chains if old else {}
        new_chains = new.chains if new else {}
        for name, rules in new_chains.items():
            before = old_chains.get(name)
            if before == rules:
                continue
            if before is not None:
                self.flush_chains.append(f"flush chain {t} {name}")
            self.fill_chains.append(f"add chain {t} {name} {{ {' ; '.join(rules)} ; }}")
        for name in old_chains.keys() - new_chains.keys():
            self.flush_chains.append(f"flush chain {t} {name}")
            self.delete_chains.append(f"delete chain {t} {name}")
        old_sets = old.sets if old else {}
        new_sets = new.sets if new else {}
        kind = "ipv4_addr" if self.family == 4 else "ipv6_addr"
        for name, timeout in new_sets.items():
            if name not in old_sets:  # the timeout is in the name: a set never changes
                self.add_sets.append(f"add set {t} {name} {{ type {kind} ; flags dynamic,timeout ; "
                                     f"timeout {timeout}s ; }}")
        for name in old_sets.keys() - new_sets.keys():
            self.delete_sets.append(f"delete set {t} {name}")
        self.names_sets = self.names_sets or bool(new_sets.keys() & old_sets.keys())
        if new is not None and (old is None or old.element != new.element):
            e = new.element
            self.add_elements.setdefault(e.map, []).append(
                f"{_element_key(key)} comment {_quote(e.comment)} : {e.verdict}")

    def lines(self) -> list[str]:
        t = self.table
        out = list(self.header)
        out += [f"delete element {t} {m} {{ {', '.join(keys)} }}" for m, keys in self.delete_elements.items()]
        if self.names_sets and not self.header:
            out.append(f"flush set {t} {ALWAYS_EMPTY}")
        out += self.add_sets + self.flush_chains + self.fill_chains
        out += [f"add map {t} {m} {{ {_map_type(self.family)} elements = {{ {', '.join(elems)} }} }}"
                for m, elems in self.add_elements.items()]
        return out + self.delete_chains + self.delete_sets


def _quote(text: str) -> str:
    # Comments come from Kubernetes names (no quotes possible), but stay safe for nft's lexer.
    return '"' + text.replace('"', "'")[:120] + '"'


def render(transactions: Iterable[Transaction]) -> str:
    """One nft file for every family's changes: one batch, applied whole or not at all."""
    lines: list[str] = []
    for txn in transactions:
        lines += txn.lines()
    return "".join(line + "\n" for line in lines)

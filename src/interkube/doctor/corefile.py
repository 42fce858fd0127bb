"""The Corefile checks that need no network: it parses and sets up, it is not an open resolver,
and no forward sends a zone back to the server's own listener.

The Corefile is read by the server's own code: :func:`interkube.corefile.parser.parse_file`,
every directive by its plugin's parser (:func:`interkube.server.runtime.parse_directives`) and
then :func:`interkube.server.runtime.build`, which runs every plugin's setup (files read, TLS
contexts built, kubeconfigs resolved) as ``interkube serve`` does before it binds anything. No
listener is opened and no startup hook runs.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from interkube.corefile.keys import TRANSPORT_DNS, TRANSPORT_TLS, parse_keys
from interkube.corefile.parser import Directive, ServerBlock, parse_file
from interkube.dns.names import is_subdomain
from interkube.doctor.findings import Finding, fail, note, ok
from interkube.errors import InterkubeError
from interkube.plugins.bind.parse import is_address

if TYPE_CHECKING:
    from interkube.kube.stanza import KubernetesConfig
    from interkube.plugins.acl.parse import AclConfig
    from interkube.plugins.forward.parse import ForwardConfig
    from interkube.upstream.address import UpstreamAddr

#: (transport, host, port); host "" is every address (no `bind`).
Listen = tuple[str, str, int]


@dataclass(frozen=True)
class Forwarded:
    """One zone a forward directive sends upstream: the block's zone narrowed by forward's FROM."""

    zone: str
    config: ForwardConfig
    where: str
    listens: tuple[Listen, ...]
    acls: tuple[AclConfig, ...]
    block_zones: tuple[str, ...]


@dataclass
class Corefile:
    """What the checks need of a Corefile that parsed and set up."""

    path: str
    blocks: list[ServerBlock]
    #: Every listener and the zones served on it.
    listens: dict[Listen, list[str]] = field(default_factory=dict)
    forwarded: list[Forwarded] = field(default_factory=list)
    kubernetes: list[KubernetesConfig] = field(default_factory=list)
    mcs: bool = False
    #: The ready plugin's address (``:8181``) and where it is written.
    ready: tuple[str, str] | None = None

    def upstreams(self, fwd: Forwarded) -> list[UpstreamAddr]:
        """A forward's upstreams: its addresses, and the nameservers of the files it names (a file
        that cannot be read gives none: the setup finding says why)."""
        from interkube.upstream.address import resolv_conf_nameservers

        out: list[UpstreamAddr] = []
        for spec in fwd.config.to:
            if spec.addr is not None:
                out.append(spec.addr)
            elif spec.path is not None:
                try:
                    out += resolv_conf_nameservers(spec.path)
                except OSError:
                    continue
        return list(dict.fromkeys(out))


def narrowed(block_zone: str, from_zone: str) -> str | None:
    """The names both a block and a forward's FROM cover (the deeper of the two), or None."""
    if is_subdomain(from_zone, block_zone):
        return from_zone
    if is_subdomain(block_zone, from_zone):
        return block_zone
    return None


def load(path: str, dns_port: int | None = None) -> tuple[Corefile | None, list[Finding]]:
    """Parse and set up ``path`` as ``interkube serve -conf path`` would, without binding."""
    from interkube.plugin.services import Services
    from interkube.server.runtime import build, parse_directives

    fix = "correct the line named (interkube serve would refuse to start with this Corefile)"
    try:
        blocks = parse_file(path, warn=False)
        model = Corefile(path, blocks)
        for block in blocks:
            _read_block(model, block, parse_directives(block), dns_port)
    except InterkubeError as exc:
        return None, [fail("corefile.parse", path, f"does not parse: {exc}", fix)]
    except OSError as exc:
        return None, [fail("corefile.parse", path, f"cannot read: {exc.strerror or exc}",
                           "give the Corefile's path with -conf")]
    found = [ok("corefile.parse", path, f"{len(blocks)} server blocks, every directive parses")]
    try:
        built = build(blocks, path, Services(), dns_port)
    except InterkubeError as exc:
        found.append(fail("corefile.setup", path, f"setup fails: {exc}", fix))
        return model, found
    found.append(ok("corefile.setup", path, "every plugin sets up (files, TLS, kubeconfigs); listeners: "
                    + ", ".join(f"{t}://{h or '*'}:{p}" for t, h, p in built.chains)))
    return model, found


def _read_block(model: Corefile, block: ServerBlock, parsed: list[tuple[int, Any, Any, Directive]],
                dns_port: int | None) -> None:
    keys = parse_keys(block.keys, dns_port)
    configs = [(plugin.name, cfg, d) for _, plugin, cfg, d in parsed]
    hosts: list[str] = []
    for name, cfg, _ in configs:
        if name == "bind":
            # Interfaces: their addresses are unknown here. 0.0.0.0 and :: are every address.
            hosts += ["" if ipaddress.ip_address(h).is_unspecified else h for h in cfg.include if is_address(h)]
    listens = tuple(dict.fromkeys((za.transport, h, za.port) for za, _ in keys for h in (hosts or [""])))
    zones = tuple(dict.fromkeys(za.zone for za, _ in keys))
    for listen in listens:
        model.listens.setdefault(listen, []).extend(zones)
    acls = tuple(cfg for name, cfg, _ in configs if name == "acl")
    for name, cfg, d in configs:
        if name == "forward":
            for block_zone in zones:
                for from_zone in cfg.from_zones:
                    zone = narrowed(block_zone, from_zone)
                    if zone is not None:
                        model.forwarded.append(Forwarded(zone, cfg, d.where, listens, acls, zones))
        elif name in ("kubernetes", "kubernetai"):
            model.kubernetes.append(cfg)
        elif name == "clusterset" and getattr(cfg, "mcs", False):
            model.mcs = True
        elif name == "ready" and model.ready is None:
            model.ready = (cfg.address, d.where)


# --- open resolver -------------------------------------------------------------------------------


def _private(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    """Whether every address of ``net`` is private, loopback or link-local (never the internet's)."""
    return net.is_private or net.is_loopback or net.is_link_local


def acl_refuses_public(acls: tuple[AclConfig, ...], zone: str, block_zones: tuple[str, ...]) -> str | None:
    """How the block's acl keeps clients on public addresses from ``zone``, or None when it
    lets them through. The rules are walked as the acl plugin does (first match decides); a
    rule matches some public client when it names no ``net`` or a net that is not all private."""
    for acl in acls:
        covered = acl.zones or block_zones
        if not any(is_subdomain(zone, z) for z in covered):
            continue
        for rule in acl.rules:
            public = rule.nets is None or any(not _private(n) for n in rule.nets)
            if not public:
                continue
            if rule.action == "allow":
                return None
            if rule.types is None:
                return f"`{rule.action}` at {rule.where}"
            # only some query types are refused: the rest goes on to the next rule
    return None


def listen_reach(listen: Listen) -> str | None:
    """Why clients on public addresses can reach a listener, or None when it is bound to private
    addresses only."""
    transport, host, port = listen
    if not host:
        return f"{transport}://*:{port} listens on every address (no `bind`), public ones included"
    if not _private(ipaddress.ip_network(host)):
        return f"{transport}://{host}:{port} listens on the public address {host}"
    return None


def check_open_resolver(model: Corefile) -> list[Finding]:
    """An open resolver answers any name for anyone: a forward of the root zone (recursion for
    every name) on a listener reachable from public addresses, with no acl refusing them."""
    out: list[Finding] = []
    for fwd in model.forwarded:
        if fwd.zone != ".":
            continue  # forwarding a private zone resolves that zone only
        reach = [r for r in (listen_reach(listen) for listen in fwd.listens) if r]
        subject = f"forward . at {fwd.where}"
        if not reach:
            out.append(ok("corefile.open-resolver", subject, "listens on private addresses only: "
                          + ", ".join(f"{h}:{p}" for _, h, p in fwd.listens)))
            continue
        refused = acl_refuses_public(fwd.acls, ".", fwd.block_zones)
        if refused:
            out.append(ok("corefile.open-resolver", subject,
                          f"forwards every name, and clients on public addresses are refused by {refused}"))
        else:
            out.append(fail(
                "corefile.open-resolver", subject,
                f"an open resolver: forwards every name and {reach[0]}, with no acl refusing public clients",
                "add `acl { allow net 127.0.0.0/8 ::1 <your private networks>; block }` to the block, or "
                "`bind` it to private addresses only"))
    if not out:
        out.append(ok("corefile.open-resolver", model.path, "forwards no root zone: resolves only its own zones"))
    return out


# --- forwarding loops -----------------------------------------------------------------------------


def local_addresses() -> set[str]:
    """This host's addresses (loopback always), to tell whether an upstream is this server."""
    out = {"127.0.0.1", "::1"}
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            out.add(str(info[4][0]))
    except OSError:
        pass
    return out


def own_listener(model: Corefile, upstream: UpstreamAddr, zone: str, local: set[str]) -> Listen | None:
    """This Corefile's listener that ``upstream`` is, serving names that overlap ``zone``."""
    transport = {TRANSPORT_DNS: TRANSPORT_DNS, TRANSPORT_TLS: TRANSPORT_TLS}.get(upstream.transport)
    host = str(ipaddress.ip_address(upstream.host))
    for listen, zones in model.listens.items():
        t, h, port = listen
        if t != transport or port != upstream.port:
            continue
        same = h == host if h else (host in local or ipaddress.ip_address(host).is_loopback)
        if same and any(narrowed(z, zone) is not None for z in zones):
            return listen
    return None


def check_self_loops(model: Corefile) -> list[Finding]:
    """A forward whose upstream is this Corefile's own listener for the same names: every query
    goes round until it times out."""
    local = local_addresses()
    out: list[Finding] = []
    for fwd in model.forwarded:
        for upstream in model.upstreams(fwd):
            listen = own_listener(model, upstream, fwd.zone, local)
            if listen is not None:
                t, h, p = listen
                out.append(fail("corefile.loop", f"forward {fwd.zone} at {fwd.where}",
                                f"forwards to {upstream}, which is this Corefile's own listener {t}://{h or '*'}:{p} "
                                f"for {fwd.zone}: a forwarding loop",
                                "forward to the remote cluster's DNS server, not to this server's own address"))
    if not out and model.forwarded:
        out.append(ok("corefile.loop", model.path, "no forward points at this Corefile's own listeners"))
    elif not model.forwarded:
        out.append(note("corefile.loop", model.path, "no forward: nothing can loop"))
    return out


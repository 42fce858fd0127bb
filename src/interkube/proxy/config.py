"""The ``interkube proxy`` configuration: a Corefile-syntax file with one ``proxy`` block.

::

    proxy {
        cluster NAME {
            kubeconfig PATH [CONTEXT]
            snapshot FILE...
            service_cidr CIDR...
            wins
        }
        local CIDR...
        masquerade
        mark VALUE
        hooks prerouting output
        announce DEVICE
        http ADDR:PORT
    }

Parsing is pure (no I/O beyond reading the file); every error names file:line. The Service
ranges are then checked with the address-plan checker (rule R6) by :func:`check_overlaps`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from interkube.corefile.lexer import Token
from interkube.corefile.parser import Directive, ServerBlock, parse_file
from interkube.errors import ConfigError
from interkube.kube.registry import CLUSTER_NAME
from interkube.netplan import rules as plan_rules
from interkube.netplan.model import AddressRange, Cluster, IPNetwork, Link, LinkKind, Origin, Plan
from interkube.pkg import args

#: The bit set on packets (meta mark) and connections (ct mark) the proxy DNATs; other rules
#: can match it, and ``masquerade`` SNATs packets carrying it. Outside kube-proxy's 0x4000
#: (masquerade) and 0x8000 (drop) so that the two never read each other's marks.
DEFAULT_MARK = 0x40000
HOOKS = ("prerouting", "output")
#: Name used for the ``local`` ranges in overlap findings.
LOCAL = "local"


@dataclass(frozen=True)
class ClusterConfig:
    name: str
    where: str                              # file:line of the `cluster` line
    kubeconfig: str | None = None
    context: str | None = None
    snapshot: tuple[str, ...] = ()
    service_cidrs: tuple[IPNetwork, ...] = ()
    service_cidr_line: int | None = None
    wins: bool = False


@dataclass(frozen=True)
class ProxyConfig:
    file: str
    clusters: tuple[ClusterConfig, ...]
    local: tuple[IPNetwork, ...] = ()
    local_line: int | None = None
    masquerade: bool = False
    mark: int = DEFAULT_MARK
    hooks: frozenset[str] = frozenset(HOOKS)
    announce: str | None = None
    http: tuple[str, int] | None = None

    def cluster(self, name: str) -> ClusterConfig:
        for cluster in self.clusters:
            if cluster.name == name:
                return cluster
        raise KeyError(name)


def load(path: str) -> ProxyConfig:
    """Read and check ``path``; ConfigError (file:line) when it is wrong."""
    return parse(parse_file(path), path)


def parse(blocks: list[ServerBlock], file: str) -> ProxyConfig:
    if len(blocks) != 1 or [k.text for k in blocks[0].keys] != ["proxy"]:
        where = blocks[1].token if len(blocks) > 1 else (blocks[0].token if blocks else None)
        if where is None:
            raise ConfigError("no `proxy { ... }` block", file)
        raise where.error("the file holds one `proxy { ... }` block")
    block = blocks[0]
    clusters: list[ClusterConfig] = []
    values: dict[str, object] = {}
    seen: dict[str, str] = {}
    for d in block.directives:
        name = d.name
        if name == "cluster":
            cluster = _cluster(d)
            if any(c.name == cluster.name for c in clusters):
                raise d.args[0].error(f"cluster {cluster.name!r} is named twice")
            clusters.append(cluster)
            continue
        if name in seen:
            raise d.error(f"given twice (first at {seen[name]})")
        seen[name] = d.where
        if name == "masquerade":
            args.bare(d)
            values["masquerade"] = True
        elif name == "mark":
            args.no_block(d)
            values["mark"] = _mark(args.nargs(d, 1, 1)[0])
        elif name == "hooks":
            args.no_block(d)
            hooks = args.nargs(d, 1, 2)
            for tok in hooks:
                if tok.text not in HOOKS:
                    raise tok.error(f"hooks: {tok.text!r} is not one of {', '.join(HOOKS)}")
            values["hooks"] = frozenset(t.text for t in hooks)
        elif name == "announce":
            args.no_block(d)
            device = args.nargs(d, 1, 1)[0]
            if not 0 < len(device.text) < 16 or "/" in device.text or " " in device.text:
                raise device.error(f"announce: {device.text!r} is not an interface name")
            values["announce"] = device.text
        elif name == "http":
            args.no_block(d)
            values["http"] = _http(args.nargs(d, 1, 1)[0])
        elif name == "local":
            args.no_block(d)
            values["local"] = tuple(args.network(t) for t in args.nargs(d, 1))
            values["local_line"] = d.token.line
        else:
            raise args.unknown_option(d, "proxy")
    if not clusters:
        raise block.token.error("proxy: no `cluster NAME { ... }` to proxy")
    if "announce" in values:
        for cluster in clusters:
            if not cluster.service_cidrs:
                raise ConfigError(f"cluster {cluster.name}: `announce` adds the Service ranges to "
                                  f"{values['announce']}, so each cluster needs a `service_cidr`",
                                  *_file_line(cluster.where))
    config = ProxyConfig(file=file, clusters=tuple(clusters), **values)  # type: ignore[arg-type]
    check_overlaps(config)
    return config


def _file_line(where: str) -> tuple[str, int | None]:
    file, _, line = where.rpartition(":")
    return (file, int(line)) if line.isdigit() else (where, None)


def _cluster(d: Directive) -> ClusterConfig:
    tok = args.nargs(d, 1, 1)[0]
    if not CLUSTER_NAME.fullmatch(tok.text):
        raise tok.error(f"cluster name {tok.text!r} may hold only letters, digits, '-', '_' and '.', "
                        "and must start and end with a letter or digit")
    values: dict[str, object] = {}
    seen: dict[str, str] = {}
    for opt in args.single_options(d, "proxy cluster", seen):
        if opt.name == "kubeconfig":
            a = args.nargs(opt, 1, 2)
            values["kubeconfig"] = a[0].text
            values["context"] = a[1].text if len(a) > 1 else None
        elif opt.name == "snapshot":
            values["snapshot"] = tuple(t.text for t in args.nargs(opt, 1))
        elif opt.name == "service_cidr":
            values["service_cidrs"] = tuple(args.network(t) for t in args.nargs(opt, 1))
            values["service_cidr_line"] = opt.token.line
        elif opt.name == "wins":
            args.nargs(opt, 0, 0)
            values["wins"] = True
        else:
            raise args.unknown_option(opt, "proxy cluster")
    if ("kubeconfig" in values) == ("snapshot" in values):
        raise d.error(f"{tok.text}: give exactly one of `kubeconfig PATH [CONTEXT]` and `snapshot FILE...`")
    return ClusterConfig(name=tok.text, where=d.where, **values)  # type: ignore[arg-type]


def _mark(tok: Token) -> int:
    try:
        value = int(tok.text, 0)
    except ValueError:
        raise tok.error(f"mark: {tok.text!r} is not a number (0x40000 or 262144)") from None
    if not 0 < value < 2**32:
        raise tok.error(f"mark: {tok.text} is not a 32-bit mark other than 0")
    return value


def _http(tok: Token) -> tuple[str, int]:
    text = tok.text
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise tok.error(f"http: {text!r} is not ADDR:PORT")
    if host:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise tok.error(f"http: {host!r} is not an IP address") from None
    return host, int(port)


def as_plan(config: ProxyConfig) -> Plan:
    """The Service ranges as an address plan whose clusters (and the ``local`` ranges) are all
    proxied together, so that the plan checker's R6 judges their overlaps."""
    members: list[Cluster] = []
    for c in config.clusters:
        members.append(Cluster(c.name, Origin(f"cluster {c.name}", _file_line(c.where)[1]), services=tuple(
            AddressRange(n, Origin(f"cluster {c.name} service_cidr", c.service_cidr_line))
            for n in c.service_cidrs)))
    if config.local:
        members.append(Cluster(LOCAL, Origin("local", config.local_line), services=tuple(
            AddressRange(n, Origin("local", config.local_line)) for n in config.local)))
    link = Link(tuple(m.name for m in members), Origin("proxy"), LinkKind.HUB, name="interkube proxy",
                service_proxy=True)
    return Plan(clusters=tuple(members), links=(link,), source=config.file)


def overlap_findings(config: ProxyConfig) -> list[plan_rules.Finding]:
    """The plan checker's R6 findings about the configured ranges."""
    return plan_rules.check(as_plan(config)).by_rule("R6")


def check_overlaps(config: ProxyConfig) -> None:
    """ConfigError with the R6 finding when two Service ranges overlap, unless exactly one of the
    two clusters says ``wins`` (the ``local`` ranges never win: the proxy does not own them)."""
    winners = {c.name for c in config.clusters if c.wins}
    for finding in overlap_findings(config):
        owners = set(finding.subjects)
        if len(owners & winners) == 1:
            continue
        where = "; ".join(f"{i.owner} {i.value} at {i.where}" for i in finding.involved)
        hint = ("both clusters say `wins`: keep it on one" if len(owners & winners) > 1
                else "or say `wins` in the cluster whose Services take the overlapping addresses")
        file, line = _file_line(finding.involved[-1].where.split(" ", 1)[0]) if finding.involved else (None, None)
        raise ConfigError(f"{finding.rule}: {finding.message} ({where}); {finding.fix}, {hint}", file, line)

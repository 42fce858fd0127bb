"""Parse a ``clusterset [ZONES...] { clusters ...; local ...; policy ...; remote ...; mcs; ... }`` stanza."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from interkube.corefile.parser import Directive
from interkube.kube.dnsrecords import DEFAULT_TTL, MAX_TTL
from interkube.kube.registry import CLUSTER_NAME
from interkube.pkg import args
from interkube.pkg import fallthrough as fall

POLICIES = ("local-first", "all")
#: How a cluster other than the local one is reached: its ready endpoints (pod IPs, routed
#: between clusters) or its ClusterIPs (for setups that proxy remote Service VIPs).
REMOTE_MODES = ("endpoints", "clusterip")


@dataclass(frozen=True)
class ClustersetConfig:
    zones: tuple[str, ...] = ()         # empty: the server block's zones
    clusters: tuple[str, ...] = ()      # empty: every kubernetes stanza of the server block
    local: str | None = None
    policy: str = "all"
    remote: str = "endpoints"
    mcs: bool = False
    ttl: int = DEFAULT_TTL
    fallthrough: fall.Fallthrough = fall.NEVER
    where: str = ""                     # the directive's file:line, for messages


class _Options(TypedDict, total=False):
    """The options a stanza sets, under their ClustersetConfig field names."""

    clusters: tuple[str, ...]
    local: str
    policy: str
    remote: str
    mcs: bool
    ttl: int
    fallthrough: fall.Fallthrough


def parse(d: Directive) -> ClustersetConfig:
    zones = args.zones(d.args)
    if any(z.endswith(("in-addr.arpa.", "ip6.arpa.")) for z in zones):
        raise d.error("reverse zones are not served (the kubernetes stanzas answer PTR)")
    values: _Options = {}
    for opt in args.single_options(d, "clusterset"):
        name = opt.name
        if name == "clusters":
            names: list[str] = []
            for tok in args.nargs(opt, 1):
                if not CLUSTER_NAME.fullmatch(tok.text):
                    raise tok.error(f"clusterset: {tok.text!r} is not a cluster name (letters, digits, "
                                    "'-', '_' and '.', starting and ending with a letter or digit)")
                # Names are DNS labels in answers, where case does not count.
                if tok.text.lower() in (n.lower() for n in names):
                    raise tok.error(f"clusterset: cluster {tok.text!r} is named twice")
                names.append(tok.text)
            values["clusters"] = tuple(names)
        elif name == "local":
            values["local"] = args.nargs(opt, 1, 1)[0].text
        elif name == "policy":
            values["policy"] = _one_of(opt, POLICIES)
        elif name == "remote":
            values["remote"] = _one_of(opt, REMOTE_MODES)
        elif name == "mcs":
            args.nargs(opt, 0, 0)
            values["mcs"] = True
        elif name == "ttl":
            values["ttl"] = args.integer(args.nargs(opt, 1, 1)[0], 0, MAX_TTL, what="ttl")
        elif name == "fallthrough":
            values["fallthrough"] = fall.parse(opt)
        else:
            raise args.unknown_option(opt, "clusterset")
    clusters = values.get("clusters", ())
    local = values.get("local")
    if local is not None and clusters and local not in clusters:
        raise d.error(f"local {local!r} is not among the clusters ({', '.join(clusters)})")
    if "policy" not in values:
        values["policy"] = "local-first" if local is not None else "all"
    elif values["policy"] == "local-first" and local is None:
        raise d.error("policy local-first needs a `local NAME` line")
    return ClustersetConfig(zones=zones, where=d.where, **values)


def _one_of(opt: Directive, choices: tuple[str, ...]) -> str:
    tok = args.nargs(opt, 1, 1)[0]
    if tok.text not in choices:
        raise tok.error(f"clusterset: {opt.name} must be one of {', '.join(choices)}, not {tok.text!r}")
    return tok.text

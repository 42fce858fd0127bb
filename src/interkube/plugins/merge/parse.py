"""Parse `merge ZONE { cluster NAME ADDRESS [ZONE]; timeout DUR; local NAME; policy ...; tls ...}`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from interkube.corefile.parser import Directive
from interkube.pkg import args
from interkube.upstream.address import UpstreamAddr, parse_upstream

POLICIES = ("local-first", "all")
DEFAULT_TIMEOUT = 1.0


@dataclass(frozen=True)
class ClusterDns:
    """One cluster reached through its DNS server: where, and the zone it serves."""

    name: str
    addr: UpstreamAddr
    zone: str = "cluster.local."


@dataclass(frozen=True)
class MergeConfig:
    zone: str
    clusters: tuple[ClusterDns, ...]
    timeout: float = DEFAULT_TIMEOUT
    local: str | None = None
    policy: str = "all"
    tls: args.TlsClientFiles | None = None
    tls_servername: str | None = None


class _Options(TypedDict, total=False):
    """The options a block sets, under their MergeConfig field names."""

    timeout: float
    local: str
    policy: str
    tls: args.TlsClientFiles
    tls_servername: str


def parse(d: Directive) -> MergeConfig:
    (zone_tok,) = args.nargs(d, 1, 1)
    zones = args.zone(zone_tok)
    if len(zones) != 1:
        raise zone_tok.error("merge: the merged zone must be one domain name")
    clusters: list[ClusterDns] = []
    opts: _Options = {}
    for opt in d.block:
        if opt.name == "cluster":
            a = args.nargs(opt, 2, 3)
            try:
                addr = parse_upstream(a[1].text)
            except ValueError as exc:
                raise a[1].error(f"cluster: {exc}") from None
            czone = args.zone(a[2])[0] if len(a) == 3 else "cluster.local."
            if any(c.name == a[0].text for c in clusters):
                raise a[0].error(f"cluster: {a[0].text!r} is named twice")
            clusters.append(ClusterDns(a[0].text, addr, czone))
        elif opt.name == "timeout":
            opts["timeout"] = args.duration(args.nargs(opt, 1, 1)[0], minimum=0.001)
        elif opt.name == "local":
            opts["local"] = args.nargs(opt, 1, 1)[0].text
        elif opt.name == "policy":
            tok = args.nargs(opt, 1, 1)[0]
            if tok.text not in POLICIES:
                raise tok.error(f"policy: unknown policy {tok.text!r} (expected {', '.join(POLICIES)})")
            opts["policy"] = tok.text
        elif opt.name == "tls":
            opts["tls"] = args.tls_client_files(opt)
        elif opt.name == "tls_servername":
            opts["tls_servername"] = args.nargs(opt, 1, 1)[0].text
        else:
            raise args.unknown_option(opt, "merge")
    if not clusters:
        raise d.error("needs at least one `cluster NAME ADDRESS [ZONE]` line")
    local = opts.get("local")
    if local is not None and local not in {c.name for c in clusters}:
        raise d.error(f"local: no cluster named {local!r}")
    if "policy" not in opts:
        opts["policy"] = "local-first" if local else "all"
    elif opts["policy"] == "local-first" and not local:
        raise d.error("policy local-first needs a `local NAME` line")
    return MergeConfig(zone=zones[0], clusters=tuple(clusters), **opts)

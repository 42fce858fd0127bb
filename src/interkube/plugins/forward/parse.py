"""Parse `forward FROM TO... { options }` (CoreDNS's forward syntax)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

import dns.rcode

from interkube.corefile.parser import Directive
from interkube.pkg import args
from interkube.upstream.address import UpstreamAddr, looks_like_address, parse_upstream
from interkube.upstream.upstream import HealthCheck

MAX_UPSTREAMS = 15
POLICIES = ("random", "round_robin", "sequential")


@dataclass(frozen=True)
class UpstreamSpec:
    """One TO argument: an address, or a resolv.conf-style file to read nameservers from."""

    addr: UpstreamAddr | None
    path: str | None
    where: str


@dataclass(frozen=True)
class ForwardConfig:
    from_zones: tuple[str, ...]
    to: tuple[UpstreamSpec, ...]
    except_zones: tuple[str, ...] = ()
    force_tcp: bool = False
    prefer_udp: bool = False
    expire: float = 10.0
    max_fails: int = 2
    health: HealthCheck = HealthCheck()
    policy: str = "random"
    max_concurrent: int = 0
    failfast_all_unhealthy: bool = False
    next_rcodes: frozenset[int] = frozenset()
    tls: args.TlsClientFiles | None = None
    tls_servername: str | None = None


class _Options(TypedDict, total=False):
    """The options a block sets, under their ForwardConfig field names."""

    force_tcp: bool
    prefer_udp: bool
    expire: float
    max_fails: int
    policy: str
    max_concurrent: int
    failfast_all_unhealthy: bool
    next_rcodes: frozenset[int]
    tls: args.TlsClientFiles
    tls_servername: str


def parse(d: Directive) -> ForwardConfig:
    a = args.nargs(d, 2)
    from_zones = args.zone(a[0])
    to: list[UpstreamSpec] = []
    for tok in a[1:]:
        if looks_like_address(tok.text):
            try:
                to.append(UpstreamSpec(parse_upstream(tok.text), None, tok.where))
            except ValueError as exc:
                raise tok.error(f"forward: {exc}") from None
        else:
            to.append(UpstreamSpec(None, tok.text, tok.where))
    if len(to) > MAX_UPSTREAMS:
        raise a[MAX_UPSTREAMS + 1].error(f"forward: more than {MAX_UPSTREAMS} upstreams")

    opts: _Options = {}
    health = HealthCheck()
    except_zones: list[str] = []
    for opt in d.block:
        name = opt.name
        if name == "except":
            except_zones.extend(args.zones(args.nargs(opt, 1)))
        elif name == "force_tcp":
            args.nargs(opt, 0, 0)
            opts["force_tcp"] = True
        elif name == "prefer_udp":
            args.nargs(opt, 0, 0)
            opts["prefer_udp"] = True
        elif name == "failfast_all_unhealthy_upstreams":
            args.nargs(opt, 0, 0)
            opts["failfast_all_unhealthy"] = True
        elif name == "expire":
            opts["expire"] = args.duration(args.nargs(opt, 1, 1)[0])
        elif name == "max_fails":
            opts["max_fails"] = args.integer(args.nargs(opt, 1, 1)[0], 0, what="max_fails")
        elif name == "health_check":
            ha = args.nargs(opt, 1, 4)
            interval = args.duration(ha[0])
            rec = True
            domain = "."
            i = 1
            while i < len(ha):
                if ha[i].text == "no_rec":
                    rec = False
                    i += 1
                elif ha[i].text == "domain" and i + 1 < len(ha):
                    domain = args.zone(ha[i + 1])[0]
                    i += 2
                else:
                    raise ha[i].error(f"health_check: unexpected {ha[i].text!r} (expected no_rec or domain NAME)")
            health = HealthCheck(interval=interval, recursion_desired=rec, domain=domain)
        elif name == "policy":
            tok = args.nargs(opt, 1, 1)[0]
            if tok.text not in POLICIES:
                raise tok.error(f"policy: unknown policy {tok.text!r} (expected {', '.join(POLICIES)})")
            opts["policy"] = tok.text
        elif name == "max_concurrent":
            opts["max_concurrent"] = args.integer(args.nargs(opt, 1, 1)[0], 1, what="max_concurrent")
        elif name == "next":
            codes = set()
            for tok in args.nargs(opt, 1):
                try:
                    codes.add(int(dns.rcode.from_text(tok.text.upper())))
                except dns.rcode.UnknownRcode:
                    raise tok.error(f"next: unknown rcode {tok.text!r}") from None
            opts["next_rcodes"] = frozenset(codes)
        elif name == "tls":
            opts["tls"] = args.tls_client_files(opt)
        elif name == "tls_servername":
            opts["tls_servername"] = args.nargs(opt, 1, 1)[0].text
        else:
            raise args.unknown_option(opt, "forward")
    if opts.get("force_tcp") and opts.get("prefer_udp"):
        raise d.error("force_tcp and prefer_udp cannot both be set")
    return ForwardConfig(from_zones=tuple(from_zones), to=tuple(to), except_zones=tuple(except_zones),
                         health=health, **opts)

"""Parse `forward FROM TO... { options }` (CoreDNS 1.15's forward syntax).

Every option CoreDNS 1.15 accepts is read here; the one interkube does not implement
(`resolver`, which only serves host-name upstreams) is refused with a message that names it.
"""

from __future__ import annotations

from typing import TypedDict

import dns.rcode

from interkube.corefile.parser import Directive
from interkube.pkg import args
from interkube.upstream.address import (
    TRANSPORT_DNS,
    TRANSPORT_HTTPS,
    TRANSPORT_TLS,
    UpstreamAddr,
    looks_like_address,
    parse_upstream,
)
from interkube.upstream.doh import METHODS
from interkube.upstream.upstream import HealthCheck

MAX_UPSTREAMS = 15
POLICIES = ("random", "round_robin", "sequential")
#: The transports a forward upstream may use.
TRANSPORTS = (TRANSPORT_DNS, TRANSPORT_TLS, TRANSPORT_HTTPS)
#: Options of CoreDNS's forward that interkube refuses, and why.
NOT_SUPPORTED = {
    "resolver": "upstreams are IP addresses or resolv.conf files here; host names are not resolved",
}


class UpstreamSpec:
    """One TO argument: an address, or a resolv.conf-style file to read nameservers from.

    This and ForwardConfig are plain classes, not dataclasses: a dataclass is a few exec'd
    functions at import, and a forward server imports these at every start (issue 18, goal 4)."""

    __slots__ = ("addr", "path", "where")

    def __init__(self, addr: UpstreamAddr | None, path: str | None, where: str) -> None:
        self.addr = addr
        self.path = path
        self.where = where


#: ForwardConfig's default of ``expire`` (CoreDNS's).
DEFAULT_EXPIRE = 10.0


class ForwardConfig:
    """A `forward` directive, parsed (CoreDNS's defaults where the block says nothing)."""

    def __init__(self, from_zones: tuple[str, ...], to: tuple[UpstreamSpec, ...], *, except_zones: tuple[str, ...] = (),
                 force_tcp: bool = False, prefer_udp: bool = False, expire: float = DEFAULT_EXPIRE,
                 max_age: float = 0.0, max_idle_conns: int = 0, read_timeout: float = 2.0, max_fails: int = 2,
                 max_connect_attempts: int | None = None, health: HealthCheck | None = None,
                 policy: str = "random", max_concurrent: int = 0, failfast_all_unhealthy: bool = False,
                 next_rcodes: frozenset[int] = frozenset(), next_on_nodata: bool = False,
                 failover_rcodes: frozenset[int] = frozenset(), doh_method: str = "POST",
                 source_address: str | None = None, tls: args.TlsClientFiles | None = None,
                 tls_servername: str | None = None) -> None:
        self.from_zones = from_zones
        self.to = to
        self.except_zones = except_zones
        self.force_tcp = force_tcp
        self.prefer_udp = prefer_udp
        self.expire = expire
        self.max_age = max_age
        self.max_idle_conns = max_idle_conns
        self.read_timeout = read_timeout
        self.max_fails = max_fails
        #: Failed attempts per query at most (None: CoreDNS's default, twice the upstreams; 0: no cap).
        self.max_connect_attempts = max_connect_attempts
        self.health = HealthCheck() if health is None else health
        self.policy = policy
        self.max_concurrent = max_concurrent
        self.failfast_all_unhealthy = failfast_all_unhealthy
        self.next_rcodes = next_rcodes
        self.next_on_nodata = next_on_nodata
        self.failover_rcodes = failover_rcodes
        self.doh_method = doh_method
        self.source_address = source_address
        self.tls = tls
        self.tls_servername = tls_servername


class _Options(TypedDict, total=False):
    """The options a block sets, under their ForwardConfig field names."""

    force_tcp: bool
    prefer_udp: bool
    expire: float
    max_age: float
    max_idle_conns: int
    read_timeout: float
    max_fails: int
    max_connect_attempts: int
    policy: str
    max_concurrent: int
    failfast_all_unhealthy: bool
    next_rcodes: frozenset[int]
    next_on_nodata: bool
    failover_rcodes: frozenset[int]
    doh_method: str
    source_address: str
    tls: args.TlsClientFiles
    tls_servername: str


def _rcodes(opt: Directive) -> frozenset[int]:
    codes = set()
    for tok in args.nargs(opt, 1):
        try:
            codes.add(int(dns.rcode.from_text(tok.text.upper())))
        except dns.rcode.UnknownRcode:
            raise tok.error(f"{opt.name}: unknown rcode {tok.text!r}") from None
    return frozenset(codes)


def _health_check(opt: Directive) -> HealthCheck:
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
    return HealthCheck(interval=interval, recursion_desired=rec, domain=domain)


def _option(opt: Directive, opts: _Options) -> None:
    """Read one option of the block into ``opts`` (a later line overrides an earlier one, as in CoreDNS)."""
    name = opt.name
    args.no_block(opt)
    if name in ("force_tcp", "prefer_udp", "next_on_nodata"):
        args.nargs(opt, 0, 0)
        opts[name] = True  # type: ignore[literal-required]  # one of the three bool keys
    elif name == "failfast_all_unhealthy_upstreams":
        args.nargs(opt, 0, 0)
        opts["failfast_all_unhealthy"] = True
    elif name in ("expire", "max_age"):
        opts[name] = args.duration(args.nargs(opt, 1, 1)[0])  # type: ignore[literal-required]
    elif name == "read_timeout":
        tok = args.nargs(opt, 1, 1)[0]
        value = args.duration(tok)
        if value <= 0:
            raise tok.error(f"read_timeout must be positive: {tok.text}")
        opts["read_timeout"] = value
    elif name in ("max_fails", "max_connect_attempts", "max_idle_conns", "max_concurrent"):
        opts[name] = args.integer(args.nargs(opt, 1, 1)[0], 0, what=name)  # type: ignore[literal-required]
    elif name == "policy":
        tok = args.nargs(opt, 1, 1)[0]
        if tok.text not in POLICIES:
            raise tok.error(f"policy: unknown policy {tok.text!r} (expected {', '.join(POLICIES)})")
        opts["policy"] = tok.text
    elif name == "next":
        opts["next_rcodes"] = _rcodes(opt)
    elif name == "failover":
        codes = _rcodes(opt)
        if dns.rcode.NOERROR in codes:
            raise opt.error("NOERROR cannot be used in failover")
        opts["failover_rcodes"] = codes
    elif name == "doh_method":
        tok = args.nargs(opt, 1, 1)[0]
        if tok.text not in METHODS:
            raise tok.error(f"doh_method must be either {' or '.join(METHODS)}, not {tok.text!r}")
        opts["doh_method"] = tok.text
    elif name == "source_address":
        opts["source_address"] = str(args.ip_address(args.nargs(opt, 1, 1)[0]))
    elif name == "tls":
        opts["tls"] = args.tls_client_files(opt)
    elif name == "tls_servername":
        opts["tls_servername"] = args.nargs(opt, 1, 1)[0].text
    elif name in NOT_SUPPORTED:
        raise opt.token.error(f"forward: option {name!r} is not supported: {NOT_SUPPORTED[name]}")
    else:
        raise args.unknown_option(opt, "forward")


def parse(d: Directive) -> ForwardConfig:
    a = args.nargs(d, 2)
    from_zones = args.zone(a[0])
    to: list[UpstreamSpec] = []
    for tok in a[1:]:
        if looks_like_address(tok.text):
            try:
                to.append(UpstreamSpec(parse_upstream(tok.text, TRANSPORTS), None, tok.where))
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
        if opt.name == "except":
            except_zones.extend(args.zones(args.nargs(opt, 1)))
        elif opt.name == "health_check":
            health = _health_check(opt)
        else:
            _option(opt, opts)
    expire = opts.get("expire", DEFAULT_EXPIRE)
    max_age = opts.get("max_age", 0.0)
    if 0 < max_age < expire:
        raise d.error(f"max_age ({max_age:g}s) must not be less than expire ({expire:g}s)")
    servername = opts.get("tls_servername")
    if servername:
        for spec in to:
            if spec.addr is not None and spec.addr.server_name:
                raise d.error(f"both forward ({servername!r}) and upstream ({spec.addr.server_name!r}) TLS server "
                              f"names are set for {spec.addr}")
    return ForwardConfig(from_zones=tuple(from_zones), to=tuple(to), except_zones=tuple(except_zones),
                         health=health, **opts)

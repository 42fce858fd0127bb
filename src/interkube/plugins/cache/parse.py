"""Parse `cache [TTL] [ZONES...] { success; denial; prefetch; serve_stale; servfail; disable; keepttl }`.

Defaults and limits are CoreDNS's (plugin/cache/setup.go), except where noted in README.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from interkube.corefile.lexer import Token
from interkube.corefile.parser import Directive
from interkube.pkg import args

#: CoreDNS's default: 256 shards of 39 items. We do not shard, so the number is exact.
DEFAULT_CAPACITY = 9984
MAX_SUCCESS_TTL = 3600
MAX_DENIAL_TTL = 1800
DEFAULT_MIN_TTL = 5
DEFAULT_SERVFAIL_TTL = 5.0
#: RFC 2308 section 7.1: a SERVFAIL may not be cached for longer than five minutes.
MAX_SERVFAIL_TTL = 300.0
DEFAULT_PREFETCH_DURATION = 60.0
DEFAULT_PREFETCH_PERCENTAGE = 10
DEFAULT_STALE_DURATION = 3600.0
STALE_MODES = ("immediate", "verify")
KINDS = ("success", "denial")

_INTEGER = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class Bucket:
    """Settings of one of the two caches (success or denial)."""

    capacity: int = DEFAULT_CAPACITY
    max_ttl: int = MAX_SUCCESS_TTL
    min_ttl: int = DEFAULT_MIN_TTL

    def clamp(self, ttl: int) -> int:
        """The cache duration for a message TTL; as CoreDNS, the maximum wins over the minimum."""
        return min(max(ttl, self.min_ttl), self.max_ttl)


@dataclass(frozen=True)
class Prefetch:
    amount: int = 0                     # 0: prefetch is off
    duration: float = DEFAULT_PREFETCH_DURATION
    percentage: int = DEFAULT_PREFETCH_PERCENTAGE


@dataclass(frozen=True)
class ServeStale:
    duration: float = DEFAULT_STALE_DURATION   # how long after expiry an entry may be served
    verify: bool = False                       # ask the next plugin first ("verify" mode)


@dataclass(frozen=True)
class CacheConfig:
    zones: tuple[str, ...] = ()                 # empty: the server block's zones
    success: Bucket = Bucket()
    denial: Bucket = field(default_factory=lambda: Bucket(max_ttl=MAX_DENIAL_TTL))
    prefetch: Prefetch = Prefetch()
    serve_stale: ServeStale | None = None
    servfail_ttl: float = DEFAULT_SERVFAIL_TTL  # 0: SERVFAIL is not cached
    disable_success: tuple[str, ...] = ()       # zones where successes are not cached
    disable_denial: tuple[str, ...] = ()
    keepttl: bool = False


def _ttl(tok: Token, what: str, lo: int) -> int:
    return args.integer(tok, lo, 2**31 - 1, what=what)


def _go_duration(tok: Token) -> float:
    """A Go duration; like time.ParseDuration, a bare "0" needs no unit."""
    if tok.text == "0":
        return 0.0
    return args.duration(tok)


def _bucket(opt: Directive, base: Bucket) -> Bucket:
    a = args.nargs(opt, 1, 3)
    capacity = args.integer(a[0], 1, what=f"{opt.name} capacity")
    max_ttl = _ttl(a[1], f"{opt.name} TTL", 1) if len(a) > 1 else base.max_ttl
    min_ttl = _ttl(a[2], f"{opt.name} MINTTL", 0) if len(a) > 2 else base.min_ttl
    return Bucket(capacity, max_ttl, min_ttl)


def _percentage(tok: Token) -> int:
    text = tok.text
    if not text.endswith("%"):
        raise tok.error(f"prefetch: percentage {text!r} must end with '%' (e.g. 10%)")
    if not text[:-1].isdigit():
        raise tok.error(f"prefetch: invalid percentage {text!r}")
    value = int(text[:-1])
    if not 10 <= value <= 90:
        raise tok.error(f"prefetch: percentage {value}% is outside [10%, 90%]")
    return value


def _prefetch(opt: Directive) -> Prefetch:
    a = args.nargs(opt, 1, 3)
    amount = args.integer(a[0], 0, what="prefetch amount")
    duration = DEFAULT_PREFETCH_DURATION
    percentage = DEFAULT_PREFETCH_PERCENTAGE
    rest = list(a[1:])
    # CoreDNS reads the second argument as the duration; a lone percentage is accepted too.
    if rest and not rest[0].text.endswith("%"):
        duration = _go_duration(rest.pop(0))
    if rest:
        percentage = _percentage(rest.pop(0))
    if rest:
        raise rest[0].error(f"prefetch: unexpected {rest[0].text!r} after the percentage")
    return Prefetch(amount, duration, percentage)


def _serve_stale(opt: Directive) -> ServeStale:
    a = args.nargs(opt, 0, 2)
    duration = _go_duration(a[0]) if a else DEFAULT_STALE_DURATION
    verify = False
    if len(a) > 1:
        mode = a[1].text.lower()
        if mode not in STALE_MODES:
            raise a[1].error(f"serve_stale: invalid refresh mode {a[1].text!r} (expected immediate or verify)")
        verify = mode == "verify"
    return ServeStale(duration, verify)


def _servfail(opt: Directive) -> float:
    tok = args.nargs(opt, 1, 1)[0]
    value = _go_duration(tok)
    if value > MAX_SERVFAIL_TTL:
        raise tok.error("servfail: caching SERVFAIL responses over 5 minutes is not permitted (RFC 2308)")
    return value


def parse(d: Directive) -> CacheConfig:
    a = list(d.args)
    success = Bucket()
    denial = Bucket(max_ttl=MAX_DENIAL_TTL)
    # The first argument is the TTL when it is a number, else it is the first zone.
    if a and _INTEGER.fullmatch(a[0].text):
        ttl = args.integer(a[0], what="cache TTL")
        if ttl <= 0:
            raise a[0].error(f"cache TTL can not be zero or negative: {ttl}")
        success = Bucket(max_ttl=ttl)
        denial = Bucket(max_ttl=ttl)
        a.pop(0)
    zones = args.zones(a)
    prefetch = Prefetch()
    serve_stale: ServeStale | None = None
    servfail = DEFAULT_SERVFAIL_TTL
    disabled: dict[str, list[str]] = {"success": [], "denial": []}
    keepttl = False
    for opt in d.block:
        args.no_block(opt)
        name = opt.name
        if name == "success":
            success = _bucket(opt, success)
        elif name == "denial":
            denial = _bucket(opt, denial)
        elif name == "prefetch":
            prefetch = _prefetch(opt)
        elif name == "serve_stale":
            serve_stale = _serve_stale(opt)
        elif name == "servfail":
            servfail = _servfail(opt)
        elif name == "disable":
            da = args.nargs(opt, 1)
            if da[0].text not in KINDS:
                raise da[0].error(f"disable: cache type must be 'success' or 'denial', not {da[0].text!r}")
            # Without zones, the whole tree; repeated lines add up (CoreDNS keeps the last).
            disabled[da[0].text].extend(args.zones(da[1:]) or (".",))
        elif name == "keepttl":
            args.nargs(opt, 0, 0)
            keepttl = True
        else:
            raise args.unknown_option(opt, "cache")
    return CacheConfig(zones=zones, success=success, denial=denial, prefetch=prefetch,
                       serve_stale=serve_stale, servfail_ttl=servfail,
                       disable_success=tuple(dict.fromkeys(disabled["success"])),
                       disable_denial=tuple(dict.fromkeys(disabled["denial"])), keepttl=keepttl)

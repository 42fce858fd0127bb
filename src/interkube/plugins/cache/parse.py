"""Parse `cache [TTL] [ZONES...] { success; denial; prefetch; serve_stale; servfail; disable; keepttl }`.

Defaults and limits are CoreDNS's (plugin/cache/setup.go), except where noted in README.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

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
#: What interkube does when serve_stale's optional arguments are left out: RFC 8767's values
#: (section 5: a 1.8 s client response timer, a 30 s failure recheck timer; section 4: a 30 s
#: TTL on stale records). CoreDNS's defaults are 0 for all three (see README.md).
DEFAULT_STALE_VERIFY_TIMEOUT = 1.8
DEFAULT_STALE_TTL = 30
DEFAULT_STALE_RECHECK = 30.0
#: RFC 8767 section 5: the failure recheck timer should not exceed 5 minutes (CoreDNS refuses more).
MAX_STALE_RECHECK = 300.0
STALE_POLICIES = ("prefer_positive",)
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
    #: verify: how long a query waits for the next plugin before it gets the stale answer
    #: (None: as long as the next plugin takes, CoreDNS's `0`).
    verify_timeout: float | None = DEFAULT_STALE_VERIFY_TIMEOUT
    ttl: int = DEFAULT_STALE_TTL               # the TTL of records served stale
    recheck: float = DEFAULT_STALE_RECHECK     # after a failed refresh, stale without asking again
    #: `serve_stale_policy prefer_positive`: a positive answer that can still be served (fresh
    #: or stale) is not replaced by a denial, an error or a NOERROR that does not answer.
    prefer_positive: bool = False


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
    # 0 keeps nothing of that kind (CoreDNS, which rounds capacities to its shards, keeps 1024).
    capacity = args.integer(a[0], 0, what=f"{opt.name} capacity")
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
    """`serve_stale [DURATION] [immediate [TTL [RECHECK]] | verify [TIMEOUT [TTL [RECHECK]]]]`."""
    a = list(args.nargs(opt, 0, 5))
    duration = _go_duration(a.pop(0)) if a else DEFAULT_STALE_DURATION
    verify = False
    if a:
        mode = a[0].text.lower()
        if mode not in STALE_MODES:
            raise a[0].error(f"serve_stale: invalid refresh mode {a[0].text!r} (expected immediate or verify)")
        verify = mode == "verify"
        a.pop(0)
    timeout: float | None = DEFAULT_STALE_VERIFY_TIMEOUT
    if verify and a:
        tok = a.pop(0)
        timeout = _go_duration(tok) or None  # 0: wait for the next plugin (CoreDNS's default)
    ttl = DEFAULT_STALE_TTL
    if a:
        tok = a.pop(0)
        seconds = _go_duration(tok)
        if seconds != int(seconds) or seconds > 0xFFFFFFFF:
            raise tok.error(f"serve_stale: response TTL {tok.text!r} must be a whole number of seconds "
                            "within the DNS TTL range")
        ttl = int(seconds)
    recheck = DEFAULT_STALE_RECHECK
    if a:
        tok = a.pop(0)
        recheck = _go_duration(tok)
        if recheck > MAX_STALE_RECHECK:
            raise tok.error("serve_stale: the failure recheck cannot exceed 5 minutes")
    if a:
        raise a[0].error(f"serve_stale: unexpected {a[0].text!r} (at most 4 arguments with immediate)")
    return ServeStale(duration, verify, timeout, ttl, recheck)


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
    policy: Directive | None = None
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
        elif name == "serve_stale_policy":
            if policy is not None:
                raise opt.token.error(f"cache: serve_stale_policy can only be specified once (first at {policy.where})")
            (tok,) = args.nargs(opt, 1, 1)
            if tok.text.lower() not in STALE_POLICIES:
                raise tok.error(f"serve_stale_policy: invalid policy {tok.text!r} (expected prefer_positive)")
            policy = opt
        else:
            raise args.unknown_option(opt, "cache")
    if policy is not None:
        if serve_stale is None:
            raise policy.token.error("cache: serve_stale_policy requires serve_stale")
        serve_stale = replace(serve_stale, prefer_positive=True)
    return CacheConfig(zones=zones, success=success, denial=denial, prefetch=prefetch,
                       serve_stale=serve_stale, servfail_ttl=servfail,
                       disable_success=tuple(dict.fromkeys(disabled["success"])),
                       disable_denial=tuple(dict.fromkeys(disabled["denial"])), keepttl=keepttl)

"""Helpers for plugin parsers: read a directive's arguments and options, fail at file:line.

Parsers built on these are pure: text in, frozen config out, no I/O.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from interkube.corefile.keys import normalize_zone, reverse_zones
from interkube.corefile.lexer import Token
from interkube.corefile.parser import Directive
from interkube.errors import ConfigError

_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration(tok: Token, *, allow_bare_seconds: bool = False, minimum: float = 0.0) -> float:
    """A Go-style duration (``500ms``, ``1m30s``) in seconds."""
    text = tok.text
    if text == "0":  # Go's ParseDuration accepts a bare zero (CoreDNS's docs write `reload 0`)
        value = 0.0
    elif allow_bare_seconds and text.isdigit():
        value = float(text)
    else:
        pos = 0
        value = 0.0
        if not text:
            raise tok.error("expected a duration such as 5s or 500ms")
        for m in _DURATION_RE.finditer(text):
            if m.start() != pos:
                break
            value += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
            pos = m.end()
        if pos != len(text):
            raise tok.error(f"invalid duration {text!r} (expected e.g. 5s, 500ms, 1m30s)")
    if value < minimum:
        raise tok.error(f"duration {text!r} is below the minimum of {minimum:g}s")
    return value


def integer(tok: Token, lo: int | None = None, hi: int | None = None, what: str = "number") -> int:
    try:
        value = int(tok.text, 10)
    except ValueError:
        raise tok.error(f"invalid {what} {tok.text!r}: expected an integer") from None
    if lo is not None and value < lo:
        raise tok.error(f"{what} {value} is below the minimum of {lo}")
    if hi is not None and value > hi:
        raise tok.error(f"{what} {value} is above the maximum of {hi}")
    return value


def zone(tok: Token) -> list[str]:
    """One zone argument: a domain name, or a CIDR meaning its reverse zones."""
    text = tok.text
    if "/" in text:
        try:
            return reverse_zones(ipaddress.ip_network(text, strict=False))
        except ValueError as exc:
            raise tok.error(f"invalid reverse zone {text!r}: {exc}") from exc
    try:
        return [normalize_zone(text)]
    except ValueError as exc:
        raise tok.error(str(exc)) from exc


def zones(tokens: Iterable[Token]) -> tuple[str, ...]:
    out: list[str] = []
    for tok in tokens:
        out.extend(zone(tok))
    return tuple(out)


def nargs(d: Directive, lo: int, hi: int | None = None) -> tuple[Token, ...]:
    """The directive's arguments, checked to number between lo and hi (None = no upper bound)."""
    n = len(d.args)
    if n < lo or (hi is not None and n > hi):
        if hi == lo:
            want = f"exactly {lo}"
        elif hi is None:
            want = f"at least {lo}"
        else:
            want = f"{lo} to {hi}"
        raise d.error(f"expected {want} argument{'s' if (hi or lo) != 1 else ''}, got {n}")
    return d.args


def no_block(d: Directive) -> None:
    if d.has_block:
        raise d.error("takes no block of options")


def bare(d: Directive) -> None:
    """The parse of a directive that takes no argument and no block (`whoami`, `any`, ...)."""
    nargs(d, 0, 0)
    no_block(d)


def single_options(d: Directive, plugin: str, seen: dict[str, str] | None = None) -> Iterator[Directive]:
    """The options in ``d``'s block, for plugins whose options are one line each and given at
    most once (an error names both lines). ``seen`` gets option -> file:line as they go, for
    later messages that name an option's line."""
    seen = {} if seen is None else seen
    for opt in d.block:
        no_block(opt)
        if opt.name in seen:
            raise opt.token.error(f"{plugin}: option {opt.name!r} given twice (first at {seen[opt.name]})")
        seen[opt.name] = opt.where
        yield opt


def unknown_option(d: Directive, parent: str) -> ConfigError:
    return d.token.error(f"{parent}: unknown option {d.name!r}")


def not_supported(tok: Token, plugin: str, what: str, why: str = "") -> ConfigError:
    """A CoreDNS option (or form) this build does not implement: named, and said to be not
    supported, rather than reported as a wrong argument count or an unknown option."""
    return tok.error(f"{plugin}: {what} is not supported" + (f" ({why})" if why else ""))


def ip_address(tok: Token) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(tok.text)
    except ValueError:
        raise tok.error(f"invalid IP address {tok.text!r}") from None


def network(tok: Token) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A CIDR (or a single address, meaning /32 or /128)."""
    try:
        return ipaddress.ip_network(tok.text, strict=False)
    except ValueError:
        raise tok.error(f"invalid network {tok.text!r}: expected an address or a CIDR") from None


def optional_address(d: Directive, default: str) -> str:
    """The one optional ADDRESS argument of an HTTP-serving plugin (ready, prometheus, ...)."""
    a = nargs(d, 0, 1)
    no_block(d)
    return a[0].text if a else default


class TlsClientFiles(NamedTuple):
    """A client's `tls [CERT KEY] [CA]` option: its certificate and key, and the CA it trusts
    (None: the system's).

    A NamedTuple, not a dataclass: a dataclass is a few exec'd functions at import, a millisecond
    of every start (issue 18)."""

    cert: str | None = None
    key: str | None = None
    ca: str | None = None


def tls_client_files(opt: Directive) -> TlsClientFiles:
    """Parse ``tls``, ``tls CA``, ``tls CERT KEY`` or ``tls CERT KEY CA`` (forward's form)."""
    t = [tok.text for tok in nargs(opt, 0, 3)]
    no_block(opt)
    if len(t) == 1:
        return TlsClientFiles(ca=t[0])
    if len(t) >= 2:
        return TlsClientFiles(cert=t[0], key=t[1], ca=t[2] if len(t) == 3 else None)
    return TlsClientFiles()

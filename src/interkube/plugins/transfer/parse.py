"""Parse `transfer [ZONES...] { to ADDRESS...; source ADDRESS }` (CoreDNS 1.15's syntax)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from interkube.corefile.lexer import Token
from interkube.corefile.parser import Directive
from interkube.pkg import args

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
#: Where NOTIFY goes when a `to` address names no port.
DNS_PORT = 53


@dataclass(frozen=True)
class Secondary:
    """A `to` address: who may transfer, and where NOTIFY goes (``host`` keeps an IPv6 scope)."""

    host: str
    port: int

    @property
    def address(self) -> Address:
        """The address without its scope: what a client's address is compared with."""
        return ipaddress.ip_address(self.host.split("%", 1)[0])

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class TransferConfig:
    zones: tuple[str, ...]              # empty: the server block's zones
    to: tuple[Secondary, ...]           # the addresses listed (NOTIFY goes to each)
    anyone: bool = False                # `to *`: every client may transfer
    source: Address | None = None       # the local address NOTIFY is sent from
    where: str = ""


def parse(d: Directive) -> TransferConfig:
    zones = args.zones(d.args)
    to: list[Secondary] = []
    anyone = False
    source: Address | None = None
    source_at = ""
    for opt in d.block:
        args.no_block(opt)
        if opt.name == "to":
            for tok in args.nargs(opt, 1):
                if tok.text == "*":
                    anyone = True
                else:
                    to.append(secondary(tok))
        elif opt.name == "source":
            tok = args.nargs(opt, 1, 1)[0]
            if source is not None:
                raise opt.token.error(f"transfer: source already given (at {source_at})")
            source, source_at = args.ip_address(tok), opt.where
        else:
            raise args.unknown_option(opt, "transfer")
    if not to and not anyone:
        raise d.error("needs a `to` option: the addresses that may transfer the zones (`to *` for anyone)")
    return TransferConfig(zones, tuple(dict.fromkeys(to)), anyone, source, d.where)


def secondary(tok: Token) -> Secondary:
    """``IP``, ``IP:PORT``, ``[IPv6]:PORT`` (an IPv6 address may carry a %scope); the port
    defaults to 53. Names are refused, as CoreDNS refuses them."""
    text = tok.text
    host, port = text, DNS_PORT
    if text.startswith("["):
        inside, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise tok.error(f"transfer: {text!r} is not an address: expected [IPv6]:PORT")
        host = inside
        if rest:
            port = _port(tok, rest[1:])
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = _port(tok, port_text)
    try:
        ipaddress.ip_address(host.split("%", 1)[0] if ":" in host else host)
    except ValueError:
        raise tok.error(f"transfer: {text!r} is not an IP address (with an optional port)") from None
    return Secondary(host, port)


def _port(tok: Token, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise tok.error(f"transfer: {tok.text!r} has an invalid port {text!r}")
    return int(text)

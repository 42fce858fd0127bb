"""Parse ``k8s_external [ZONE...] { apex APEX; ttl TTL; headless; fallthrough [ZONE...] }``."""

from __future__ import annotations

from dataclasses import dataclass

import dns.exception
import dns.name

from interkube.corefile.parser import Directive
from interkube.kube.dnsrecords import MAX_TTL
from interkube.pkg import args
from interkube.pkg import fallthrough as fall

#: CoreDNS's defaults: the apex label of the name server records, and the TTL.
DEFAULT_APEX = "dns"
DEFAULT_TTL = 5


@dataclass(frozen=True)
class ExternalConfig:
    zones: tuple[str, ...] = ()         # empty: the server block's zones
    apex: str = DEFAULT_APEX
    ttl: int = DEFAULT_TTL
    headless: bool = False
    fallthrough: fall.Fallthrough = fall.NEVER
    where: str = ""                     # the directive's file:line, for messages


def parse(d: Directive) -> ExternalConfig:
    zones = args.zones(d.args)
    apex, ttl, headless, fallthrough = DEFAULT_APEX, DEFAULT_TTL, False, fall.NEVER
    for opt in args.single_options(d, "k8s_external"):
        if opt.name == "apex":
            tok = args.nargs(opt, 1, 1)[0]
            try:
                dns.name.from_text(tok.text, origin=None)
            except dns.exception.DNSException as exc:
                raise tok.error(f"k8s_external: apex {tok.text!r} is not a DNS name: {exc}") from None
            if tok.text.endswith("."):
                raise tok.error(f"k8s_external: apex {tok.text!r} is a label under the zone, not a name ending in '.'")
            apex = tok.text
        elif opt.name == "ttl":
            ttl = args.integer(args.nargs(opt, 1, 1)[0], 0, MAX_TTL, what="ttl")
        elif opt.name == "headless":
            args.bare(opt)
            headless = True
        elif opt.name == "fallthrough":
            fallthrough = fall.parse(opt)
        else:
            raise args.unknown_option(opt, "k8s_external")
    return ExternalConfig(zones=zones, apex=apex, ttl=ttl, headless=headless, fallthrough=fallthrough, where=d.where)

"""Parse `loadbalance [round_robin | weighted WEIGHTFILE] [{ reload DURATION | prefer CIDR... }]`.

As in CoreDNS, the block's options depend on the policy: `weighted` takes `reload`, and
`round_robin` (the default) takes `prefer`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from interkube.corefile.parser import Directive
from interkube.pkg import args

POLICIES = ("round_robin", "weighted")
#: CoreDNS's default interval between two looks at the weight file.
DEFAULT_RELOAD = 30.0

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class LoadbalanceConfig:
    policy: str = "round_robin"
    weight_file: str | None = None      # `weighted` only
    reload: float = DEFAULT_RELOAD      # `weighted` only; 0: the file is read once
    prefer: tuple[Network, ...] = ()    # `round_robin` only: addresses in these first, in order
    where: str = ""


def _weighted_options(d: Directive) -> float:
    reload = DEFAULT_RELOAD
    for opt in args.single_options(d, "loadbalance"):
        if opt.name == "reload":
            (tok,) = args.nargs(opt, 1, 1)
            reload = args.duration(tok)
        elif opt.name == "prefer":
            raise args.not_supported(opt.token, "loadbalance", "option 'prefer' with the weighted policy",
                                     "only with round_robin, as in CoreDNS")
        else:
            raise args.unknown_option(opt, "loadbalance weighted")
    return reload


def _round_robin_options(d: Directive) -> tuple[Network, ...]:
    prefer: list[Network] = []
    for opt in d.block:
        args.no_block(opt)
        if opt.name == "prefer":
            for tok in opt.args:
                try:
                    # A CIDR, as CoreDNS's net.ParseCIDR wants it (a bare address is refused).
                    if "/" not in tok.text:
                        raise ValueError
                    prefer.append(ipaddress.ip_network(tok.text, strict=False))
                except ValueError:
                    raise tok.error(f"loadbalance: invalid CIDR {tok.text!r} for prefer") from None
        elif opt.name == "reload":
            raise args.not_supported(opt.token, "loadbalance", "option 'reload' with the round_robin policy",
                                     "only with weighted, as in CoreDNS")
        else:
            raise args.unknown_option(opt, "loadbalance")
    return tuple(prefer)


def parse(d: Directive) -> LoadbalanceConfig:
    a = d.args
    policy = a[0].text if a else "round_robin"
    if policy not in POLICIES:
        raise a[0].error(f"loadbalance: unknown policy {policy!r} (expected round_robin or weighted)")
    if policy == "round_robin":
        if len(a) > 1:
            raise a[1].error(f"loadbalance: round_robin takes no argument, got {a[1].text!r}")
        return LoadbalanceConfig(prefer=_round_robin_options(d), where=d.where)
    if len(a) < 2:
        raise d.error("weighted needs a weight file: loadbalance weighted WEIGHTFILE")
    if len(a) > 2:
        raise a[2].error(f"loadbalance: unexpected argument {a[2].text!r} after the weight file")
    return LoadbalanceConfig(policy="weighted", weight_file=a[1].text, reload=_weighted_options(d), where=d.where)

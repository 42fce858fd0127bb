"""Parse `loadbalance [round_robin]`."""

from __future__ import annotations

from dataclasses import dataclass

from interkube.corefile.parser import Directive
from interkube.pkg import args


@dataclass(frozen=True)
class LoadbalanceConfig:
    policy: str = "round_robin"


def parse(d: Directive) -> LoadbalanceConfig:
    a = args.nargs(d, 0, 1)
    args.no_block(d)
    if a and a[0].text != "round_robin":
        raise a[0].error(f"loadbalance: unknown policy {a[0].text!r} (only round_robin)")
    return LoadbalanceConfig()

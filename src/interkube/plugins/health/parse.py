"""Parse `health [ADDRESS] [{ lameduck DURATION }]`."""

from __future__ import annotations

from dataclasses import dataclass

from interkube.corefile.parser import Directive
from interkube.pkg import args

DEFAULT_ADDRESS = ":8080"


@dataclass(frozen=True)
class HealthConfig:
    address: str = DEFAULT_ADDRESS
    lameduck: float = 0.0


def parse(d: Directive) -> HealthConfig:
    a = args.nargs(d, 0, 1)
    lameduck = 0.0
    for opt in d.block:
        if opt.name != "lameduck":
            raise args.unknown_option(opt, "health")
        lameduck = args.duration(args.nargs(opt, 1, 1)[0])
    return HealthConfig(a[0].text if a else DEFAULT_ADDRESS, lameduck)

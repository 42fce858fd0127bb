"""Parse `reload [INTERVAL] [JITTER]`."""

from __future__ import annotations

from dataclasses import dataclass

from interkube.corefile.parser import Directive
from interkube.pkg import args

MIN_INTERVAL = 2.0
MIN_JITTER = 1.0


@dataclass(frozen=True)
class ReloadConfig:
    interval: float = 30.0
    jitter: float = 15.0


def parse(d: Directive) -> ReloadConfig:
    a = args.nargs(d, 0, 2)
    args.no_block(d)
    interval = args.duration(a[0], minimum=MIN_INTERVAL) if a else 30.0
    jitter = args.duration(a[1], minimum=MIN_JITTER) if len(a) > 1 else 15.0
    # As CoreDNS: a jitter above half the interval is cut to half.
    return ReloadConfig(interval, min(jitter, interval / 2))

"""Parse `bufsize [SIZE]`."""

from __future__ import annotations

from dataclasses import dataclass

from interkube.corefile.parser import Directive
from interkube.pkg import args

#: DNS flag day 2020's recommendation, CoreDNS's default.
DEFAULT_SIZE = 1232
#: RFC 6891's floor and CoreDNS's ceiling.
MIN_SIZE, MAX_SIZE = 512, 4096


@dataclass(frozen=True)
class BufsizeConfig:
    size: int = DEFAULT_SIZE


def parse(d: Directive) -> BufsizeConfig:
    a = args.nargs(d, 0, 1)
    args.no_block(d)
    if not a:
        return BufsizeConfig()
    return BufsizeConfig(args.integer(a[0], MIN_SIZE, MAX_SIZE, what="buffer size"))

"""Parse `bind ADDRESS|IFACE... [{ except ADDRESS|IFACE... }]`."""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

from interkube.corefile.parser import Directive
from interkube.pkg import args


class BindConfig(NamedTuple):
    """A `bind` directive, parsed.
    (A NamedTuple, not a dataclass: a dataclass is a few exec'd functions at import, a
    millisecond of every start, issue 18.)"""

    include: tuple[str, ...]   # addresses or interface names
    exclude: tuple[str, ...] = ()


def is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def parse(d: Directive) -> BindConfig:
    include = [t.text for t in args.nargs(d, 1)]
    exclude: list[str] = []
    for opt in d.block:
        if opt.name != "except":
            raise args.unknown_option(opt, "bind")
        exclude.extend(t.text for t in args.nargs(opt, 1))
    return BindConfig(tuple(include), tuple(exclude))




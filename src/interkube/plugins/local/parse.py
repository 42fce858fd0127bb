"""Parse `local [{ localhost_prefix on|off }]`."""

from __future__ import annotations

from dataclasses import dataclass

from interkube.corefile.parser import Directive
from interkube.pkg import args


@dataclass(frozen=True)
class LocalConfig:
    #: Answer `localhost.<anything>` as localhost too (CoreDNS's default, kept for backward
    #: compatibility; RFC 6761 names only `<anything>.localhost.`).
    localhost_prefix: bool = True


def parse(d: Directive) -> LocalConfig:
    args.nargs(d, 0, 0)
    prefix = True
    for opt in args.single_options(d, "local"):
        if opt.name != "localhost_prefix":
            raise args.unknown_option(opt, "local")
        (value,) = args.nargs(opt, 1, 1)
        if value.text not in ("on", "off"):
            raise value.error(f"local: localhost_prefix expects 'on' or 'off', got {value.text!r}")
        prefix = value.text == "on"
    return LocalConfig(localhost_prefix=prefix)

"""Parse `hosts [FILE [ZONES...]] {...}`: inline entries, `ttl`, `no_reverse`, `reload`,
`fallthrough [ZONES...]` and `fallthrough_unsupported`."""

from __future__ import annotations

from typing import NamedTuple

from interkube.corefile.parser import Directive
from interkube.pkg import args
from interkube.pkg import fallthrough as fall
from interkube.plugins.hosts.hostsfile import parse_address, parse_name

DEFAULT_PATH = "/etc/hosts"


class HostsConfig(NamedTuple):
    """A `hosts` directive, parsed.
    (A NamedTuple, not a dataclass: a dataclass is a few exec'd functions at import, a
    millisecond of every start, issue 18.)"""

    path: str = DEFAULT_PATH
    zones: tuple[str, ...] = ()         # empty: the server block's zones
    inline: tuple[str, ...] = ()        # hosts-file lines written in the Corefile
    ttl: int = 3600
    reverse: bool = True                # answer PTR from the entries
    reload: float = 5.0                 # seconds; 0 disables
    fallthrough: fall.Fallthrough = fall.NEVER
    #: Also pass questions of types other than A/AAAA for names that have entries.
    fallthrough_unsupported: bool = False


def _inline_line(opt: Directive) -> str:
    """An inline entry as a hosts-file line, checked so that a typo fails at its line.

    CoreDNS silently takes any unknown option as an inline line (and then ignores it when it
    is not an address); here an option that is neither a known one nor an address is an error.
    """
    if parse_address(opt.name) is None:
        raise opt.token.error(f"hosts: unknown option {opt.name!r} "
                              "(inline entries start with an IP address)")
    if not opt.args:
        raise opt.token.error(f"hosts: inline entry {opt.name!r} has no host name")
    for tok in opt.args:
        if parse_name(tok.text) is None:
            raise tok.error(f"hosts: invalid host name {tok.text!r}")
    return " ".join([opt.name, *(t.text for t in opt.args)])


def parse(d: Directive) -> HostsConfig:
    a = d.args
    path = a[0].text if a else DEFAULT_PATH
    zones = args.zones(a[1:])
    inline: list[str] = []
    ttl = 3600
    reverse = True
    reload = 5.0
    fallthrough = fall.NEVER
    unsupported: Directive | None = None
    for opt in d.block:
        args.no_block(opt)
        if opt.name == "ttl":
            ttl = args.integer(args.nargs(opt, 1, 1)[0], 1, 65535, what="ttl")
        elif opt.name == "no_reverse":
            args.nargs(opt, 0, 0)
            reverse = False
        elif opt.name == "reload":
            reload = args.duration(args.nargs(opt, 1, 1)[0])
        elif opt.name == "fallthrough":
            fallthrough = fall.parse(opt)
        elif opt.name == "fallthrough_unsupported":
            args.nargs(opt, 0, 0)
            unsupported = opt
        else:
            inline.append(_inline_line(opt))
    if unsupported is not None and not fallthrough.enabled:
        raise unsupported.error("requires fallthrough")
    return HostsConfig(path, zones, tuple(inline), ttl, reverse, reload, fallthrough,
                       unsupported is not None)

"""Parse `timeouts { read DURATION; write DURATION; idle DURATION; maxtcpqueries MAXIMUM }`."""

from __future__ import annotations

from interkube.corefile.parser import Directive
from interkube.pkg import args
from interkube.plugin.setup import ConnectionTimeouts

#: CoreDNS's bounds for every timeout.
MIN_TIMEOUT = 1.0
MAX_TIMEOUT = 24 * 3600.0
DURATIONS = ("read", "write", "idle")


def parse(d: Directive) -> ConnectionTimeouts:
    args.nargs(d, 0, 0)
    values: dict[str, float | int] = {}
    for opt in args.single_options(d, "timeouts"):
        if opt.name == "maxtcpqueries":
            (tok,) = args.nargs(opt, 1, 1)
            n = args.integer(tok, what="maxtcpqueries")
            if n == 0 or n < -1:
                raise tok.error(f"timeouts: maxtcpqueries {n} must be -1 (no limit) or a positive integer")
            values["max_queries"] = n
            continue
        if opt.name not in DURATIONS:
            raise args.unknown_option(opt, "timeouts")
        (tok,) = args.nargs(opt, 1, 1)
        # A bare number is seconds, as CoreDNS's durations.NewDurationFromArg reads it.
        seconds = args.duration(tok, allow_bare_seconds=True)
        if not MIN_TIMEOUT <= seconds <= MAX_TIMEOUT:
            raise tok.error(f"timeouts: {opt.name} {tok.text} must be between 1 second and 24 hours")
        values[opt.name] = seconds
    if not values:
        raise d.error("a timeouts block with no timeouts specified (give read, write, idle or maxtcpqueries)")
    return ConnectionTimeouts(read=values.get("read"), write=values.get("write"), idle=values.get("idle"),
                              max_queries=int(values["max_queries"]) if "max_queries" in values else None)

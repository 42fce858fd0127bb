"""Parse `log [NAMES...] [FORMAT] [{ class success|denial|error|all... }]`, as CoreDNS reads it."""

from __future__ import annotations

from dataclasses import dataclass

from interkube.corefile.parser import Directive
from interkube.pkg import args

COMMON = ('{remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do} {>bufsize}" '
          '{rcode} {>rflags} {rsize} {duration}')
COMBINED = COMMON + ' "{>opcode}"'
CLASSES = ("success", "denial", "error", "all")


@dataclass(frozen=True)
class Rule:
    """Queries for names under ``name`` are logged in ``format`` when their answer's class is in
    ``classes`` (CoreDNS's log.Rule)."""

    name: str                       # fully qualified, lower case
    format: str = COMMON
    classes: frozenset[str] = frozenset({"all"})


@dataclass(frozen=True)
class LogConfig:
    """One `log` directive: a rule per name, all with the directive's format and classes."""

    rules: tuple[Rule, ...] = (Rule("."),)


def parse(d: Directive) -> LogConfig:
    a = d.args
    fmt = COMMON
    names = a
    # As CoreDNS: one argument is always a name; with more, the last one is the format if it
    # holds a placeholder (a `{`), else every argument is a name (`log a.example b.example`).
    if len(a) > 1 and "{" in a[-1].text:
        fmt = a[-1].text.replace("{common}", COMMON).replace("{combined}", COMBINED)
        names = a[:-1]
    zones = args.zones(names) if names else (".",)
    classes: set[str] = set()
    for opt in d.block:
        if opt.name != "class":
            raise args.unknown_option(opt, "log")
        for tok in args.nargs(opt, 1):
            if tok.text not in CLASSES:
                raise tok.error(f"log: unknown class {tok.text!r} (expected {', '.join(CLASSES)})")
            classes.add(tok.text)
    chosen = frozenset(classes or {"all"})
    return LogConfig(tuple(Rule(zone, fmt, chosen) for zone in zones))

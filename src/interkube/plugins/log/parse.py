"""Parse `log [NAMES...] [FORMAT] [{ class success|denial|error|all... }]`."""

from __future__ import annotations

from dataclasses import dataclass

from interkube.pkg import args
from interkube.corefile.parser import Directive

COMMON = '{remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do} {>bufsize}" {rcode} {>rflags} {rsize} {duration}'
COMBINED = COMMON + ' "{>opcode}"'
CLASSES = ("success", "denial", "error", "all")


@dataclass(frozen=True)
class LogConfig:
    names: tuple[str, ...] = (".",)
    format: str = COMMON
    classes: frozenset[str] = frozenset({"all"})


def parse(d: Directive) -> LogConfig:
    a = d.args
    names: tuple[str, ...] = (".",)
    fmt = COMMON
    # As CoreDNS: one argument is a name; with more, the last one is the format.
    if len(a) == 1:
        names = args.zones(a)
    elif len(a) > 1:
        names = args.zones(a[:-1])
        fmt = a[-1].text
    fmt = fmt.replace("{common}", COMMON).replace("{combined}", COMBINED)
    classes: set[str] = set()
    for opt in d.block:
        if opt.name != "class":
            raise args.unknown_option(opt, "log")
        for tok in args.nargs(opt, 1):
            if tok.text not in CLASSES:
                raise tok.error(f"log: unknown class {tok.text!r} (expected {', '.join(CLASSES)})")
            classes.add(tok.text)
    return LogConfig(names, fmt, frozenset(classes or {"all"}))

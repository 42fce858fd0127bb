"""Parse `errors [stdout] [{ stacktrace; consolidate DURATION REGEXP [LEVEL] [show_first]; consolidate off }]`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from interkube.corefile.parser import Directive
from interkube.pkg import args

LEVELS = ("warning", "error", "info", "debug")
#: As CoreDNS: a longer pattern is refused (compiling one costs memory a Corefile should not
#: be able to demand).
MAX_REGEXP_LEN = 10000


@dataclass(frozen=True)
class Consolidate:
    """Errors whose message matches ``pattern`` are counted, and one line per ``period_ns``
    (from the first of them) says how many there were."""

    period_ns: int
    pattern: re.Pattern[str]
    level: str = "error"
    #: Log the first error of a period as it happens, and the count only if more followed.
    show_first: bool = False

    @property
    def period(self) -> float:
        return self.period_ns / 1e9


@dataclass(frozen=True)
class ErrorsConfig:
    stacktrace: bool = False
    consolidate: tuple[Consolidate, ...] = ()
    #: No `consolidate` in the block: errors are consolidated by message (see
    #: interkube.plugins.errors.handler.ByMessage). Any `consolidate` rule, or `consolidate off`,
    #: means what it means in CoreDNS and turns this off.
    by_message: bool = True


def parse(d: Directive) -> ErrorsConfig:
    a = args.nargs(d, 0, 1)
    if a and a[0].text != "stdout":  # CoreDNS's only log destination, accepted for its Corefiles
        raise a[0].error(f"errors: invalid log file {a[0].text!r} (only stdout)")
    stacktrace = False
    rules: list[Consolidate] = []
    off: Directive | None = None
    for opt in d.block:
        if opt.name == "stacktrace":
            args.nargs(opt, 0, 0)
            stacktrace = True
        elif opt.name == "consolidate" and len(opt.args) == 1 and opt.args[0].text == "off":
            off = opt
        elif opt.name == "consolidate":
            rules.append(_consolidate(opt))
        else:
            raise args.unknown_option(opt, "errors")
    if off is not None and rules:
        raise off.args[0].error("consolidate off: the block also has consolidate rules")
    return ErrorsConfig(stacktrace, tuple(rules), by_message=off is None and not rules)


def _consolidate(opt: Directive) -> Consolidate:
    a = args.nargs(opt, 2, 4)
    period_ns = round(args.duration(a[0], minimum=0.001) * 1e9)
    if len(a[1].text) > MAX_REGEXP_LEN:
        raise a[1].error(f"consolidate: regular expression too long: {len(a[1].text)} > {MAX_REGEXP_LEN}")
    try:
        pattern = re.compile(a[1].text)
    except re.error as exc:
        raise a[1].error(f"consolidate: invalid regular expression: {exc}") from None
    level: str | None = None
    show_first = False
    # CoreDNS's order: the level (optional) before show_first (optional).
    for tok in a[2:]:
        word = tok.text.lower()
        if word in LEVELS:
            if level is not None:
                raise tok.error("consolidate: more than one log level")
            if show_first:
                raise tok.error("consolidate: the log level must come before show_first")
            level = word
        elif tok.text == "show_first" and not show_first:
            show_first = True
        else:
            raise tok.error(f"consolidate: unknown option {tok.text!r} (a level: {', '.join(LEVELS)}; "
                            f"or show_first)")
    return Consolidate(period_ns, pattern, level or "error", show_first)

"""Parse `errors [{ stacktrace; consolidate DURATION REGEXP [LEVEL] }]`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from interkube.pkg import args
from interkube.corefile.parser import Directive

LEVELS = ("warning", "error", "info", "debug")


@dataclass(frozen=True)
class Consolidate:
    period: float
    pattern: re.Pattern[str]
    level: str = "error"


@dataclass(frozen=True)
class ErrorsConfig:
    stacktrace: bool = False
    consolidate: tuple[Consolidate, ...] = ()


def parse(d: Directive) -> ErrorsConfig:
    args.nargs(d, 0, 0)
    stacktrace = False
    rules: list[Consolidate] = []
    for opt in d.block:
        if opt.name == "stacktrace":
            args.nargs(opt, 0, 0)
            stacktrace = True
        elif opt.name == "consolidate":
            a = args.nargs(opt, 2, 3)
            period = args.duration(a[0], minimum=0.001)
            try:
                pattern = re.compile(a[1].text)
            except re.error as exc:
                raise a[1].error(f"consolidate: invalid regular expression: {exc}") from None
            level = "error"
            if len(a) == 3:
                level = a[2].text.lower()
                if level not in LEVELS:
                    raise a[2].error(f"consolidate: level must be one of {', '.join(LEVELS)}")
            rules.append(Consolidate(period, pattern, level))
        else:
            raise args.unknown_option(opt, "errors")
    return ErrorsConfig(stacktrace, tuple(rules))

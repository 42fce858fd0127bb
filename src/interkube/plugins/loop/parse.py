"""Parse `loop` (no arguments)."""

from __future__ import annotations

from dataclasses import dataclass

from interkube.corefile.parser import Directive
from interkube.pkg import args


@dataclass(frozen=True)
class LoopConfig:
    pass


def parse(d: Directive) -> LoopConfig:
    args.nargs(d, 0, 0)
    args.no_block(d)
    return LoopConfig()

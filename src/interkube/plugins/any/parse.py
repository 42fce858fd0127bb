"""Parse `any` (no arguments, no block): there is nothing to configure."""

from __future__ import annotations

from interkube.corefile.parser import Directive
from interkube.pkg import args


def parse(d: Directive) -> None:
    args.bare(d)

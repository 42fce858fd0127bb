"""Parse `metadata [ZONES...]`."""

from __future__ import annotations

from dataclasses import dataclass

from interkube.corefile.parser import Directive
from interkube.pkg import args


@dataclass(frozen=True)
class MetadataConfig:
    zones: tuple[str, ...] = ()     # empty: the server block's zones


def parse(d: Directive) -> MetadataConfig:
    args.no_block(d)
    return MetadataConfig(args.zones(d.args))

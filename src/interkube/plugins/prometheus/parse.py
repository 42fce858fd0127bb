"""Parse `prometheus [ADDRESS]`."""

from __future__ import annotations

from dataclasses import dataclass

from interkube.corefile.parser import Directive
from interkube.pkg import args

DEFAULT_ADDRESS = "localhost:9153"


@dataclass(frozen=True)
class PrometheusConfig:
    address: str = DEFAULT_ADDRESS


def parse(d: Directive) -> PrometheusConfig:
    return PrometheusConfig(args.optional_address(d, DEFAULT_ADDRESS))

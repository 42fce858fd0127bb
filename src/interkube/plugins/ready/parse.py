"""Parse `ready [ADDRESS]`."""

from __future__ import annotations

from dataclasses import dataclass

from interkube.corefile.parser import Directive
from interkube.pkg import args

DEFAULT_ADDRESS = ":8181"


@dataclass(frozen=True)
class ReadyConfig:
    address: str = DEFAULT_ADDRESS


def parse(d: Directive) -> ReadyConfig:
    for opt in d.block:
        if opt.name == "monitor":
            raise args.not_supported(opt.token, "ready", "option 'monitor'",
                                     "every request asks the plugins again, as CoreDNS's `monitor continuously`")
    return ReadyConfig(args.optional_address(d, DEFAULT_ADDRESS))

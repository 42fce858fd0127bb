"""Parse `nsid [DATA...]`."""

from __future__ import annotations

from dataclasses import dataclass

from interkube.corefile.parser import Directive
from interkube.pkg import args


@dataclass(frozen=True)
class NsidConfig:
    #: The identifier; None: the host's name, read when the configuration is loaded.
    data: str | None = None


def parse(d: Directive) -> NsidConfig:
    args.no_block(d)
    if not d.args:
        return NsidConfig()
    # Several words make one identifier, joined by single spaces (as CoreDNS joins them).
    return NsidConfig(" ".join(tok.text for tok in d.args))

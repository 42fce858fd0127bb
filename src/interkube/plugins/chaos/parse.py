"""Parse `chaos [VERSION] [AUTHORS...]`."""

from __future__ import annotations

from dataclasses import dataclass

from interkube import __version__
from interkube.corefile.parser import Directive
from interkube.pkg import args

#: What `version.bind` says by default (CoreDNS says CoreDNS-<version>).
DEFAULT_VERSION = f"interkube-{__version__}"
#: What `authors.bind` says by default (CoreDNS lists its maintainers' GitHub handles).
DEFAULT_AUTHORS = ("interkube",)
#: A TXT string holds at most 255 bytes; longer values are cut there, as CoreDNS cuts them.
MAX_TXT = 255


def trim(text: str) -> str:
    """``text`` cut to what one TXT string holds (255 bytes, never mid-character)."""
    data = text.encode()
    if len(data) <= MAX_TXT:
        return text
    return data[:MAX_TXT].decode(errors="ignore")


@dataclass(frozen=True)
class ChaosConfig:
    version: str = DEFAULT_VERSION
    authors: tuple[str, ...] = DEFAULT_AUTHORS


def parse(d: Directive) -> ChaosConfig:
    a = [tok.text for tok in d.args]
    args.no_block(d)
    if not a:
        return ChaosConfig()
    if len(a) == 1:
        return ChaosConfig(version=trim(a[0]))
    # Several authors: each once, sorted (as CoreDNS keeps them); answered in a random order.
    return ChaosConfig(version=trim(a[0]), authors=tuple(sorted({trim(x) for x in a[1:]})))

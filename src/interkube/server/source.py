"""Where `interkube serve` reads its configuration: -conf FILE, ./Corefile, or the built-in default.

Apart from interkube.server.main so that the serve command can read the Corefile before the
server's modules (and asyncio) are imported: what it asks for decides whether OpenSSL is loaded
(see interkube.server.openssl).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import NamedTuple

from interkube.corefile.parser import ServerBlock, parse_file, parse_text


class CorefileSource(NamedTuple):
    """Where the configuration comes from: a file on disk, or the built-in default.
    (A NamedTuple, not a dataclass: a dataclass is a few exec'd functions at import, a
    millisecond of every start, issue 18.)"""

    path: str | None              # None: the built-in default
    text: str | None = None       # set for the built-in default

    @property
    def name(self) -> str:
        return self.path or "<built-in default>"

    def parse(self, warn: bool = True) -> list[ServerBlock]:
        if self.path is not None:
            return parse_file(self.path, warn=warn)
        return parse_text(self.text or "", self.name, warn=warn)


def default_dir() -> Path:
    """The folder holding the built-in default's Corefile and data files."""
    return Path(str(resources.files("interkube.server") / "default"))


def builtin_default() -> CorefileSource:
    folder = default_dir()
    text = (folder / "Corefile").read_text(encoding="utf-8")
    # The default's data files live in the package; the Corefile names them through this
    # variable so it stays readable as an example.
    text = text.replace("{$INTERKUBE_DEFAULT_DIR}", str(folder))
    return CorefileSource(path=None, text=text)


def choose_corefile(conf: str | None) -> CorefileSource:
    """-conf FILE, else ./Corefile if present, else the built-in default (as the docs say)."""
    if conf:
        return CorefileSource(path=conf)
    if os.path.isfile("Corefile"):
        return CorefileSource(path="Corefile")
    return builtin_default()

"""Parse `file DBFILE [ZONES...] { reload DURATION; fallthrough [ZONES...] }`."""

from __future__ import annotations

from dataclasses import dataclass

from interkube.corefile.parser import Directive
from interkube.pkg import args
from interkube.pkg import fallthrough as fall


@dataclass(frozen=True)
class FileConfig:
    path: str
    zones: tuple[str, ...] = ()         # empty: the server block's zones
    reload: float = 60.0                # seconds between checks; 0 disables
    fallthrough: fall.Fallthrough = fall.NEVER


def parse(d: Directive) -> FileConfig:
    a = args.nargs(d, 1)
    reload = 60.0
    fallthrough = fall.NEVER
    for opt in d.block:
        args.no_block(opt)
        if opt.name == "reload":
            reload = args.duration(args.nargs(opt, 1, 1)[0])
        elif opt.name == "fallthrough":
            fallthrough = fall.parse(opt)
        elif opt.name == "reload_by_mtime":
            raise args.not_supported(opt.token, "file", "option 'reload_by_mtime'",
                                     "a zone is taken again when its SOA serial changes")
        else:
            raise args.unknown_option(opt, "file")
    return FileConfig(a[0].text, args.zones(a[1:]), reload, fallthrough)

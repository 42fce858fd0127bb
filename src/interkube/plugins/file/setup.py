"""Wire `file`: load the zone file for each zone now, so that any mistake stops the start."""

from __future__ import annotations

import os

from interkube.pkg.filewatch import WatchedFile
from interkube.plugin.setup import SetupContext
from interkube.plugins.file.handler import FileHandler, log, zone_parser
from interkube.plugins.file.parse import FileConfig
from interkube.plugins.file.zone import ZoneFileInvalid


def setup(cfg: FileConfig, ctx: SetupContext) -> FileHandler:
    # Relative to the working directory, as CoreDNS resolves it when no `root` is set.
    path = os.path.abspath(cfg.path)
    watched = WatchedFile(path, zone_parser(path, cfg.zones or ctx.zones), log)
    try:
        data = watched.read()
    except OSError as exc:
        raise ctx.error(f"cannot read zone file {path}: {exc.strerror or exc}") from exc
    except ZoneFileInvalid as exc:
        raise ctx.error(str(exc)) from exc
    handler = FileHandler(cfg, watched, data)
    ctx.on_startup(handler.start)
    ctx.on_shutdown(handler.stop)
    return handler

"""Wire `hosts`: read the file once (so a bad file fails at start), build the handler."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

from interkube.dns.names import ZoneSet
from interkube.pkg.filewatch import WatchedFile
from interkube.plugin.setup import SetupContext
from interkube.plugins.hosts.handler import HostsHandler
from interkube.plugins.hosts.hostsfile import HostsData, parse_hosts
from interkube.plugins.hosts.parse import HostsConfig

log = logging.getLogger("interkube.plugin.hosts")


def hosts_parser(origins: Sequence[str], reverse: bool) -> Callable[[bytes], HostsData]:
    """Bytes of a hosts file -> entries (its own ZoneSet: reloads parse in a worker thread)."""
    zones = ZoneSet(origins)

    def parse(raw: bytes) -> HostsData:
        return parse_hosts(raw.decode("utf-8", errors="replace").splitlines(), zones, reverse)

    return parse


def setup(cfg: HostsConfig, ctx: SetupContext) -> HostsHandler:
    origins = cfg.zones or ctx.zones
    # Relative to the working directory, as CoreDNS resolves it when no `root` is set.
    path = os.path.abspath(cfg.path)
    watched = WatchedFile(path, hosts_parser(origins, cfg.reverse), log)
    inline = parse_hosts(cfg.inline, ZoneSet(origins), cfg.reverse)
    try:
        file_data = watched.read()
    except FileNotFoundError:
        # CoreDNS starts anyway and picks the file up once it appears.
        log.warning("hosts file %s does not exist; serving the inline entries until it does", path)
        watched.unreadable = True
        file_data = HostsData()
    except OSError as exc:
        raise ctx.error(f"cannot read hosts file {path}: {exc.strerror or exc}") from exc
    handler = HostsHandler(cfg, origins, watched, inline, file_data, ctx.services.metrics)
    ctx.on_startup(handler.start)
    ctx.on_shutdown(handler.stop)
    return handler

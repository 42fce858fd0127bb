"""Parse ``autopath [ZONE...] RESOLV-CONF|@PLUGIN``."""

from __future__ import annotations

from dataclasses import dataclass

from interkube.corefile.parser import Directive
from interkube.pkg import args


@dataclass(frozen=True)
class AutopathConfig:
    zones: tuple[str, ...] = ()     # empty: the server block's zones
    #: A resolv.conf-like file whose search list every client gets (read at setup), or "".
    resolv_conf: str = ""
    #: The plugin of the block that tells each client's search list (``@kubernetes``), or "".
    plugin: str = ""
    where: str = ""                 # the directive's file:line, for messages


def parse(d: Directive) -> AutopathConfig:
    args.no_block(d)
    if not d.args:
        raise d.error("no resolv-conf specified: autopath [ZONE...] RESOLV-CONF|@PLUGIN (e.g. @kubernetes)")
    *zone_tokens, last = d.args
    zones = args.zones(zone_tokens)
    if last.text.startswith("@"):
        name = last.text[1:]
        if not name:
            raise last.error("autopath: `@` names the plugin that gives the search path, e.g. @kubernetes")
        return AutopathConfig(zones=zones, plugin=name, where=d.where)
    return AutopathConfig(zones=zones, resolv_conf=last.text, where=d.where)

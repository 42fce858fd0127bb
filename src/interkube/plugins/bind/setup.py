"""Wire `bind`: resolve interface names to their addresses and set the block's listen addresses."""

from __future__ import annotations

import subprocess

from interkube.pkg.netif import interface_addresses
from interkube.plugin.setup import SetupContext
from interkube.plugins.bind.parse import BindConfig, is_address


def _expand(names: tuple[str, ...], ctx: SetupContext) -> list[str]:
    out: list[str] = []
    for item in names:
        if is_address(item):
            out.append(item)
            continue
        try:
            out.extend(interface_addresses(item))
        except (LookupError, subprocess.CalledProcessError) as exc:
            raise ctx.error(str(exc)) from exc
    return out


def setup(cfg: BindConfig, ctx: SetupContext) -> None:
    include = _expand(cfg.include, ctx)
    exclude = set(_expand(cfg.exclude, ctx))
    current = list(ctx.block.bind)
    for addr in include:
        if addr not in exclude and addr not in current:
            current.append(addr)
    if not current:
        raise ctx.error("no address left to listen on after `except`")
    ctx.block.bind = tuple(current)
    return None

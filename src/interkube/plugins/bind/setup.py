"""Wire `bind`: resolve interface names to their addresses and set the block's listen addresses."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess

from interkube.plugins.bind.parse import BindConfig, is_address
from interkube.server.plugin import SetupContext


def interface_addresses(name: str) -> list[str]:
    """Every address configured on interface ``name`` (via iproute2's JSON output)."""
    if name not in {n for _, n in socket.if_nameindex()}:
        raise LookupError(f"no interface or address {name!r}")
    ip = shutil.which("ip")
    if ip is None:
        raise LookupError(f"cannot list the addresses of interface {name!r}: iproute2's `ip` is not installed")
    out = subprocess.run([ip, "-json", "addr", "show", "dev", name], capture_output=True, text=True, check=True)
    addrs = []
    for link in json.loads(out.stdout or "[]"):
        for info in link.get("addr_info", []):
            local = info.get("local")
            if local and not (info.get("family") == "inet6" and info.get("scope") == "link"):
                addrs.append(local)
    return addrs


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

"""The addresses of this host's network interfaces (for bind's interface names and NS records)."""

from __future__ import annotations

import shutil
import socket
import subprocess


def interface_addresses(name: str) -> list[str]:
    """Every address configured on interface ``name`` (via iproute2's JSON output)."""
    import json  # (only for `bind IFACE`: not a module every server imports at start, issue 18)

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

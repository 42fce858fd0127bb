"""Talking to nftables: ``nft -f -`` transactions, and reading the programmed table back.

libnftables' Python binding is not used: it is not installed here, and ``nft -f -`` applies a
whole file as one batch just the same (every command in it is committed together or not at all).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

from interkube.errors import ProxyError
from interkube.proxy.rules import FAMILIES, NO_ENDPOINTS_MAP, SERVICE_MAP, TABLE

_WHERE = re.compile(r"^(?:/dev/stdin|-):(\d+):", re.MULTILINE)


class NftFailed(ProxyError):
    """nft refused a transaction; nothing of it was applied."""

    def __init__(self, message: str, line: int | None = None, text: str = "") -> None:
        self.line = line
        self.text = text
        super().__init__(message)


def nft_binary() -> str:
    found = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")
    if found is None:
        raise ProxyError("nft (nftables) is not installed")
    return found


def failure(stderr: str, text: str) -> NftFailed:
    """nft's own error, with the line of our file it names (nft prints it too, but a log line
    should carry it whole)."""
    message = stderr.strip() or "nft failed without a message"
    match = _WHERE.search(message)
    if match is None:
        return NftFailed(f"nft: {message}")
    number = int(match.group(1))
    lines = text.splitlines()
    failing = lines[number - 1] if 0 < number <= len(lines) else ""
    first = message.splitlines()[0]
    return NftFailed(f"nft: line {number} of {len(lines)}: {failing!r}: {first}", number, failing)


async def apply(text: str, binary: str) -> None:
    """Apply ``text`` as one transaction; NftFailed with the failing line when refused."""
    proc = await asyncio.create_subprocess_exec(binary, "-f", "-", stdin=subprocess.PIPE,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = await proc.communicate(text.encode())
    if proc.returncode != 0:
        raise failure(err.decode(errors="replace"), text)


def apply_sync(text: str, binary: str) -> None:
    proc = subprocess.run([binary, "-f", "-"], input=text.encode(), capture_output=True, check=False)
    if proc.returncode != 0:
        raise failure(proc.stderr.decode(errors="replace"), text)


# --- reading the table back --------------------------------------------------------------------


@dataclass
class Programmed:
    """One element of the live table: a Service port and what it leads to."""

    family: str
    vip: str
    protocol: str
    port: int
    service: str                    # the element's comment: cluster/namespace/name:port
    endpoints: list[str] = field(default_factory=list)   # IP:PORT ([IPv6]:PORT)
    affinity: bool = False

    @property
    def rejects(self) -> bool:
        return not self.endpoints

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "vip": self.vip, "protocol": self.protocol, "port": self.port,
                "service": self.service, "endpoints": self.endpoints, "affinity": self.affinity,
                "rejects": self.rejects}


def read_table(family: str, binary: str) -> list[Programmed] | None:
    """The Service ports programmed in ``family``'s table of this network namespace; None when
    there is no such table."""
    proc = subprocess.run([binary, "-j", "list", "table", family, TABLE], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        if "No such file or directory" in proc.stderr:
            return None
        raise ProxyError(f"nft list table {family} {TABLE}: {proc.stderr.strip()}")
    return parse_table(family, json.loads(proc.stdout))


def parse_table(family: str, doc: dict[str, Any]) -> list[Programmed]:
    maps: dict[str, list[Any]] = {}
    rules: dict[str, list[list[dict[str, Any]]]] = {}
    for item in doc.get("nftables", []):
        if "map" in item:
            maps[item["map"]["name"]] = item["map"].get("elem", [])
        elif "rule" in item:
            rules.setdefault(item["rule"]["chain"], []).append(item["rule"].get("expr", []))
    out: list[Programmed] = []
    for name in (SERVICE_MAP, NO_ENDPOINTS_MAP):
        for key, verdict in maps.get(name, []):
            elem = key.get("elem", key)
            vip, protocol, port = elem["val"]["concat"]
            p = Programmed(family, str(vip), str(protocol), int(port), str(elem.get("comment", "")))
            if name == SERVICE_MAP:
                # The Service's chain holds its endpoints' DNATs (each twice with affinity: the
                # client seen before, and the random pick).
                endpoints: dict[str, None] = {}
                for expr in rules.get(verdict["goto"]["target"], []):
                    p.affinity = p.affinity or bool(_walk(expr, "set"))  # update @aff-...
                    for dnat in _walk(expr, "dnat"):
                        addr = str(dnat["addr"])
                        endpoints[f"[{addr}]:{dnat['port']}" if ":" in addr else f"{addr}:{dnat['port']}"] = None
                p.endpoints = list(endpoints)
            out.append(p)
    out.sort(key=lambda p: (p.service, p.vip, p.port, p.protocol))
    return out


def _walk(node: Any, key: str) -> list[Any]:
    """Every value under ``key`` anywhere in a rule's JSON (a statement may sit among others)."""
    found: list[Any] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                found.append(v)
            else:
                found.extend(_walk(v, key))
    elif isinstance(node, list):
        for v in node:
            found.extend(_walk(v, key))
    return found


def read_all(binary: str) -> dict[str, list[Programmed] | None]:
    return {family: read_table(family, binary) for family in FAMILIES.values()}

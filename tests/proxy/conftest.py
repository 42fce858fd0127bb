"""Fixtures of the proxy tests: the scenario's namespaces (see proxylab.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.netns import Lab, unavailable

from proxylab import CLIENT_V4, CLIENT_V6, GATEWAY_V4, GATEWAY_V6, Topology

_WHY: list[str | None] = []


def _skip_reason() -> str | None:
    if not _WHY:
        _WHY.append(unavailable())
    return _WHY[0]


@pytest.fixture
def topo(tmp_path: Path) -> Iterator[Topology]:
    """A client and a gateway namespace (forwarding on); tests add clusters with topo.cluster()."""
    why = _skip_reason()
    if why:
        pytest.skip(why)
    with Lab(prefix="ikpx") as lab:
        client = lab.netns("cli")
        gateway = lab.netns("gw")
        lab.link(client, gateway, [f"{CLIENT_V4}/24", f"{CLIENT_V6}/64"], [f"{GATEWAY_V4}/24", f"{GATEWAY_V6}/64"])
        gateway.sysctl("net.ipv4.ip_forward", "1")
        gateway.sysctl("net.ipv6.conf.all.forwarding", "1")
        yield Topology(lab, tmp_path, client, gateway)

"""A question the stanza has a template for is answered from it on the fast path without the
zone match (issue 18 goal 3), and only from the templates of the index the cluster holds now:
an index swapped in without an event (as a preload is) is answered from its own data."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from interkube.kube.snapshot import SnapshotSource
from interkube.plugin.kubestanza import KubernetesHandler
from testkit.fakekube import service, write_snapshot
from testkit.servers import aaddresses

Running = Any  # tests/plugins/conftest.py's Running: a server in the test's loop
Serve = Callable[[str], Awaitable[Running]]

NAME = "web.shop.svc.cluster.local."


class NoMatch:
    """Stands in for the stanza's zones: a question answered from a template never asks them."""

    def match(self, lname: bytes) -> str | None:
        raise AssertionError("the zone match was asked for a question with a template")


async def started(tmp_path: Path, serve: Serve) -> tuple[Running, KubernetesHandler]:
    snapshot = write_snapshot(tmp_path / "cluster.yaml", [service("shop", "web", cluster_ips=["10.96.0.7"]),
                                                           service("shop", "db", cluster_ips=["10.96.0.8"])])
    running = await serve(f"cluster.local:PORT {{\n bind 127.0.0.1\n kubernetes {{\n snapshot {snapshot}\n }}\n}}\n")
    handler = running.handler("kubernetes")
    assert isinstance(handler, KubernetesHandler)
    return running, handler


async def test_a_question_with_a_template_is_answered_without_the_zone_match(
        tmp_path: Path, serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    running, handler = await started(tmp_path, serve)
    assert await aaddresses(NAME, running.port) == ("NOERROR", ["10.96.0.7"])
    assert await aaddresses("nothing.shop.svc.cluster.local.", running.port) == ("NXDOMAIN", [])
    built = handler.built
    monkeypatch.setattr(handler, "zones", NoMatch())
    assert await aaddresses(NAME, running.port) == ("NOERROR", ["10.96.0.7"])
    assert await aaddresses("nothing.shop.svc.cluster.local.", running.port) == ("NXDOMAIN", [])
    assert handler.built == built


async def test_an_index_swapped_in_without_an_event_is_answered_from_its_own_data(
        tmp_path: Path, serve: Serve) -> None:
    running, handler = await started(tmp_path, serve)
    assert await aaddresses(NAME, running.port) == ("NOERROR", ["10.96.0.7"])
    moved = write_snapshot(tmp_path / "moved.yaml", [service("shop", "web", cluster_ips=["10.96.0.9"])])
    source = handler.cluster.source
    assert isinstance(source, SnapshotSource)
    handler.cluster.index = SnapshotSource((str(moved),), source.filters).load(handler.cluster)
    assert await aaddresses(NAME, running.port) == ("NOERROR", ["10.96.0.9"])
    assert await aaddresses("db.shop.svc.cluster.local.", running.port) == ("NXDOMAIN", [])

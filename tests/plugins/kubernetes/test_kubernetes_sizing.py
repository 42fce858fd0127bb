"""A stanza's templates, and the process's name memos, are sized by the names its cluster
serves (issue 18 goal 3): a cluster with more Services than the tables' own bounds, asked one
name after the other, is answered from templates on every pass after the first (at 100,000
Services, oldest-first forgetting had dropped each template and memo entry before its name
came back: every answer was parsed, matched and built again). The bounds still hold."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from interkube.dns import names, wire
from interkube.dns.memo import SERVED_NAMES
from interkube.plugin import kubestanza
from interkube.plugin.kubestanza import KubernetesHandler, templates_for
from testkit.fakekube import service, write_snapshot
from testkit.servers import aaddresses

Running = Any  # tests/plugins/conftest.py's Running: a server in the test's loop
Serve = Callable[[str], Awaitable[Running]]

SERVICES = 120


def test_the_template_capacity_follows_the_names_within_its_bounds() -> None:
    assert templates_for(0) == kubestanza.TEMPLATE_CAPACITY
    assert templates_for(10**9) == kubestanza.TEMPLATE_CEILING
    big = kubestanza.TEMPLATE_CAPACITY
    assert templates_for(big) == min(kubestanza.TEMPLATE_CEILING, kubestanza.TEMPLATES_PER_NAME * big)


async def test_a_cluster_larger_than_the_tables_is_answered_from_templates_in_turn(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, serve: Serve) -> None:
    # The tables' own bounds well below the names asked, as 32,768 and 100,000 are below a
    # cluster of 100,000 Services.
    monkeypatch.setattr(kubestanza, "TEMPLATE_CAPACITY", 30)
    monkeypatch.setattr(names, "_MEMO_LIMIT", 30)
    monkeypatch.setattr(wire._MEMOS, "base", 30)
    monkeypatch.setattr(wire._MEMOS, "limit", 30)
    snapshot = write_snapshot(tmp_path / "cluster.yaml", [
        service(f"ns{i % 3}", f"svc{i}", cluster_ips=[f"10.96.1.{i}"]) for i in range(SERVICES)])
    running = await serve(f"cluster.local:PORT {{\n bind 127.0.0.1\n kubernetes {{\n snapshot {snapshot}\n }}\n}}\n")
    handler = running.handler("kubernetes")
    assert isinstance(handler, KubernetesHandler)
    assert SERVED_NAMES.total >= SERVICES
    table = handler.generation.templates
    assert table.capacity == templates_for(SERVICES) == 2 * SERVICES
    for round_ in range(2):
        for i in range(SERVICES):
            assert await aaddresses(f"svc{i}.ns{i % 3}.svc.cluster.local.", running.port) == \
                ("NOERROR", [f"10.96.1.{i}"])
        if round_ == 0:
            built = handler.built
    assert handler.built == built == SERVICES  # the second pass built nothing again
    assert len(table) <= table.capacity
    zone_memo = handler.zones._memos
    assert zone_memo.limit >= SERVICES and len(zone_memo) >= SERVICES

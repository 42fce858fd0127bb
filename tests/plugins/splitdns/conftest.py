"""The splitdns tests' cluster (splitdns_data.py) as a snapshot file, and the public DNS behind
`forward`: a fake upstream on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from testkit.fakekube import write_snapshot
from testkit.fakeupstream import FakeUpstream

from splitdns_data import objects, public_records


@pytest.fixture
def cluster(tmp_path: Path) -> Path:
    return write_snapshot(tmp_path / "cluster.yaml", objects())


@pytest.fixture
async def public() -> AsyncIterator[FakeUpstream]:
    up = await FakeUpstream().start()
    up.behaviour.records = public_records()
    yield up
    await up.stop()

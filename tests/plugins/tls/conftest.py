"""Fixtures for the TLS tests (helpers live in tls_helpers.py)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from tls_helpers import ADDRESS, NAME, Pki, issued

from testkit.fakeupstream import FakeUpstream
from interkube.tlsutil import watch


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """Fresh files per test (rotation tests overwrite them); the keys are generated once."""
    d = tmp_path / "pki"
    d.mkdir()
    for name, item in issued().items():
        item.save(d / f"{name}.crt", d / f"{name}.key")
    return Pki(d, issued())


@pytest.fixture(autouse=True)
def _interkube_logs_reach_caplog() -> Iterator[None]:
    # `interkube serve` (tested elsewhere in the same process) stops propagation to the root
    # logger, where caplog listens.
    logger = logging.getLogger("interkube")
    saved = logger.propagate
    logger.propagate = True
    yield
    logger.propagate = saved


@pytest.fixture
def fast_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Certificate files checked every 50 ms instead of every 2 s."""
    monkeypatch.setattr(watch, "POLL_INTERVAL", 0.05)


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    """The remote cluster's DNS (plain DNS, behind the DoT server)."""
    up = await FakeUpstream().start()
    up.behaviour.records = {(f"{NAME}.", "A"): [ADDRESS]}
    yield up
    await up.stop()

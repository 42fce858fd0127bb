"""Fixtures for the TLS tests (the certificates and DoT helpers are in testkit/dot.py, the
``pki`` fixture in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from interkube.tlsutil import watch
from testkit.dot import ADDRESS, NAME
from testkit.fakeupstream import FakeUpstream


@pytest.fixture(autouse=True)
def _interkube_logs_reach_caplog(interkube_caplog: pytest.LogCaptureFixture) -> None:
    """Every TLS test reads what the plugins logged (see tests/conftest.py)."""


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

"""Fixtures of the server tests."""

from __future__ import annotations

import pytest

from interkube.server import listeners


@pytest.fixture(params=["C helper", "Python loop"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways a UDP listener reads its socket: the C helper's batches, or the Python loop."""
    if request.param == "C helper":
        if listeners._udpfast is None:
            pytest.skip("interkube._udpfast is not built")
    else:
        monkeypatch.setattr(listeners, "_udpfast", None)
    return str(request.param)

"""Fixtures for every test directory."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.dot import Pki, issued


@pytest.fixture
def interkube_caplog(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog that sees interkube's records at INFO and above.

    `interkube serve`, run in-process by other tests of the same session, stops the `interkube`
    logger from propagating to the root logger, where caplog listens; this lets it through again
    for one test.
    """
    logger = logging.getLogger("interkube")
    saved = logger.propagate
    logger.propagate = True
    caplog.set_level(logging.INFO, logger="interkube")
    try:
        yield caplog
    finally:
        logger.propagate = saved


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """The certificates of testkit.dot as files, fresh per test (rotation tests overwrite them);
    the keys are generated once per session."""
    d = tmp_path / "pki"
    d.mkdir()
    for name, item in issued().items():
        item.save(d / f"{name}.crt", d / f"{name}.key")
    return Pki(d, issued())


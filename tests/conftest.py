"""Fixtures for every test directory."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


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


"""Fixtures for every test directory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from testkit.dot import Pki, issued
from testkit.fakeupstream import FakeUpstream

#: The peers (kube-apiserver, etcd, CoreDNS) as fixtures: kube_api, kube, kube_ns, coredns, ...
pytest_plugins = ["testkit.peerfixtures"]


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


@pytest.fixture
async def two_upstreams() -> AsyncIterator[tuple[FakeUpstream, FakeUpstream]]:
    """Two upstreams that answer a.example. A differently (192.0.2.1 and 192.0.2.2), so that an
    answer shows which one a configuration forwards to."""
    a, b = await FakeUpstream().start(), await FakeUpstream().start()
    a.behaviour.records = {("a.example.", "A"): ["192.0.2.1"]}
    b.behaviour.records = {("a.example.", "A"): ["192.0.2.2"]}
    yield a, b
    await a.stop()
    await b.stop()


"""The real peers as pytest fixtures, for any test directory: etcd + kube-apiserver (one per
session, a fresh namespace per test) and CoreDNS, built by ``scripts/build-peers``. When a peer
is missing, every test that needs it skips with one line saying so, and the run's summary says
how to build it. Loaded by ``tests/conftest.py`` (``pytest_plugins``).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client

from testkit.coredns import CoreDNS
from testkit.kubeapi import KubeAPI, KubeObjects, kubeconfig_with_contexts
from testkit.peers import PEERS, build_hint, find_peer, skip_message

_REPORTS = pytest.StashKey[list[str]]()
#: Peers found missing -> how many tests skipped for it (in this process).
_MISSING: dict[str, int] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2])
        if " not built: " in reason:
            name = reason.split(" not built: ", 1)[0].removeprefix("Skipped: ")
            _MISSING[name] = _MISSING.get(name, 0) + 1


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """After the run: what the peer tests reported (the differential figures), or the one line
    saying that they were skipped and how to enable them."""
    for text in config.stash.get(_REPORTS, []):
        terminalreporter.write_sep("-", "peers")
        terminalreporter.write_line(text)
    if _MISSING:
        missing = [name for name in PEERS if find_peer(name) is None]
        terminalreporter.write_line(
            f"peers: {sum(_MISSING.values())} tests skipped, {', '.join(missing)} not built: "
            f"{build_hint()}")


@pytest.fixture
def peer_report(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """``peer_report(text)``: print ``text`` in pytest's summary at the end of the run."""
    return lambda text: request.config.stash.setdefault(_REPORTS, []).append(text)


def require_peer(name: str) -> Path:
    """The built binary of ``name``, or skip the test with how to build it."""
    path = find_peer(name)
    if path is None:
        pytest.skip(skip_message(name))
    return path


@pytest.fixture(scope="session")
def kube_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPI]:
    """etcd + kube-apiserver on loopback with the MCS CRDs installed (a ``KubeAPI``)."""
    apiserver = require_peer("kube-apiserver")
    etcd = require_peer("etcd")
    api = KubeAPI(tmp_path_factory.mktemp("kubeapi"), apiserver, etcd)
    try:
        api.start()
        api.install_mcs_crds()
        yield api
    finally:
        api.stop()


@pytest.fixture(scope="session")
def kube_api_b(tmp_path_factory: pytest.TempPathFactory, kube_api: KubeAPI) -> Iterator[KubeAPI]:
    """A second cluster for tests across two: etcd and kube-apiserver of its own on loopback,
    its contexts named ``interkube-test-b`` (``kube_api`` is ``interkube-test``)."""
    api = KubeAPI(tmp_path_factory.mktemp("kubeapi-b"), require_peer("kube-apiserver"), require_peer("etcd"),
                  name="interkube-test-b")
    try:
        api.start()
        yield api
    finally:
        api.stop()


@pytest.fixture(scope="session")
def two_clusters_kubeconfig(tmp_path_factory: pytest.TempPathFactory, kube_api: KubeAPI,
                            kube_api_b: KubeAPI) -> Path:
    """One kubeconfig with the context ``a`` (``kube_api``, current) and ``b`` (``kube_api_b``)."""
    return kubeconfig_with_contexts(tmp_path_factory.mktemp("two-clusters") / "kubeconfig",
                                    {"a": kube_api, "b": kube_api_b})


@pytest.fixture(scope="session")
def kube_client(kube_api: KubeAPI) -> Iterator[Client]:
    """A lightkube client as the admin user (system:masters)."""
    client = kube_api.client()
    yield client
    client.close()


@pytest.fixture
def kube(kube_api: KubeAPI, kube_client: Client) -> KubeObjects:
    """A ``KubeObjects`` helper on the admin client."""
    return KubeObjects(kube_client)


def _namespace_name(nodeid: str) -> str:
    # A DNS label derived from the test name (readable in API server logs) plus a random tail.
    base = re.sub(r"[^a-z0-9]+", "-", nodeid.rsplit("::", 1)[-1].lower()).strip("-")[:40]
    return f"{base or 't'}-{secrets.token_hex(3)}"


@pytest.fixture
def kube_ns(request: pytest.FixtureRequest, kube_api: KubeAPI, kube: KubeObjects) -> Iterator[str]:
    """A fresh namespace for this test; it and all its objects are deleted afterwards."""
    name = kube.namespace(_namespace_name(request.node.nodeid))
    yield name
    kube_api.delete_namespace(name)


@pytest.fixture(scope="session")
def coredns_binary() -> Path:
    """The built CoreDNS, or skip."""
    return require_peer("coredns")


@pytest.fixture
def coredns(tmp_path: Path) -> Iterator[Callable[..., CoreDNS]]:
    """A factory: ``coredns(corefile, **kw)`` starts CoreDNS and returns the running ``CoreDNS``.

    Every instance started through it is stopped at teardown.
    """
    binary = require_peer("coredns")
    started: list[CoreDNS] = []

    def start(corefile: str, **kw: Any) -> CoreDNS:
        server = CoreDNS(binary, corefile, tmp_path / f"coredns-{len(started)}", **kw)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()

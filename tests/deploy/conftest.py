"""Fixtures for tests of rendered manifests: server-side apply (dry run or for real) against
the session's kube-apiserver, and the cert-manager Certificate CRD."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pytest
import yaml

from testkit.kubeapi import CRD_DIR, KubeAPI
from testkit.waiting import wait_until

from deploykit import server_side_apply

Apply = Callable[[Iterable[Mapping[str, Any]]], list[dict[str, Any]]]

CERT_MANAGER_CRD = CRD_DIR / "cert-manager" / "certificates.cert-manager.io.yaml"


@pytest.fixture
def dry_run(kube_api: KubeAPI) -> Apply:
    """``dry_run(objects)``: each object server-side applied with dryRun=All; nothing is stored."""
    return functools.partial(server_side_apply, kube_api, dry_run=True)


@pytest.fixture
def apply(kube_api: KubeAPI) -> Apply:
    """``apply(objects)``: each object server-side applied for real (namespaced ones vanish
    with the test's namespace; cluster-scoped ones are named after it)."""
    return functools.partial(server_side_apply, kube_api, dry_run=False)


@pytest.fixture(scope="session")
def cert_manager_crd(kube_api: KubeAPI) -> None:
    """The Certificate CRD installed and served."""
    crd = yaml.safe_load(CERT_MANAGER_CRD.read_text())
    resp = kube_api.http().post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)
    assert resp.status_code in (201, 409), resp.text[:500]
    wait_until(lambda: kube_api.http().get("/apis/cert-manager.io/v1/certificates").status_code == 200,
               "the Certificate CRD served", 30, every=0.1)



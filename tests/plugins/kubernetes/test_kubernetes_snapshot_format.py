"""The sample snapshot is exactly what kubectl writes, in YAML and in JSON."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from interkube.kube.cluster import Cluster
from interkube.kube.filters import Filters
from interkube.kube.snapshot import SnapshotSource
from testkit.fakekube import FakeKube, serving_in_thread, write_kubeconfig


def kubectl_get(kube: FakeKube, kubeconfig: Path, output: str) -> str:
    return subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "get", "services,endpointslices,pods",
                           "-A", "-o", output], capture_output=True, text=True, timeout=60, check=True).stdout


def index_summary(path: Path) -> dict[str, Any]:
    source = SnapshotSource((str(path),), Filters(pods=True))
    index = source.load(Cluster("c", source))
    services = sorted((s.namespace, s.name, s.cluster_ips) for s in index.services())
    return {"counts": index.counts(), "services": services}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_the_sample_snapshot_is_kubectl_output(tmp_path: Path, cluster_objects: list[dict[str, Any]],
                                               cluster_yaml: Path) -> None:
    # kubectl sends a token only over TLS, so the fake serves HTTPS here.
    kube = FakeKube(tls=True)
    kube.add_all(cluster_objects)
    with serving_in_thread(kube):
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"sample": kube})
        as_yaml = kubectl_get(kube, kubeconfig, "yaml")
        as_json = kubectl_get(kube, kubeconfig, "json")
    assert yaml.safe_load(as_yaml) == yaml.safe_load(cluster_yaml.read_text())
    (tmp_path / "c.json").write_text(as_json)
    assert index_summary(tmp_path / "c.json") == index_summary(cluster_yaml)
    assert index_summary(cluster_yaml)["counts"]["services"] == 17

"""Snapshot files: the shapes kubectl writes, several files, filters, bad objects, reloads."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from interkube.kube.cluster import Cluster
from interkube.kube.filters import Filters
from interkube.kube.index import ClusterIndex
from interkube.kube.labels import parse_selector
from interkube.kube.snapshot import SnapshotError, SnapshotSource
from testkit.fakekube import as_list, endpoint_slice, pod, service

OBJECTS = [
    service("app", "web", cluster_ips=["10.96.0.10"], labels={"tier": "front"}),
    endpoint_slice("app", "web-1", "web", [{"ip": "10.244.1.5"}], labels={"tier": "front"}),
    service("other", "db", cluster_ips=["10.96.0.20"]),
    pod("app", "web-1", "10.244.1.5"),
    {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web", "namespace": "app"}},  # not read
    {"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport",
     "metadata": {"name": "web", "namespace": "app"}},
]


def load(paths: list[Path], filters: Filters = Filters(pods=True)) -> tuple[Cluster, ClusterIndex]:
    source = SnapshotSource(tuple(str(p) for p in paths), filters)
    cluster = Cluster("snap", source)
    index = source.load(cluster)
    cluster.preload(index)
    return cluster, index


def write(path: Path, doc: Any, *, as_json: bool = False) -> Path:
    path.write_text(json.dumps(doc, indent=2) if as_json else yaml.safe_dump(doc))
    return path


def test_a_kubectl_list_in_yaml_and_in_json(tmp_path: Path) -> None:
    for as_json in (False, True):
        _, index = load([write(tmp_path / f"c{as_json}", as_list(OBJECTS), as_json=as_json)])
        assert index.counts() == {"services": 2, "endpointslices": 1, "pods": 1, "serviceexports": 1,
                                  "serviceimports": 0}
        assert index.service("app", "web").cluster_ips == ("10.96.0.10",)  # type: ignore[union-attr]
        assert index.pod_namespaces_at("10.244.1.5") == ("app",)


def test_typed_lists_multiple_documents_and_several_files(tmp_path: Path) -> None:
    # A ServiceList straight from the API: its items carry no kind of their own.
    items = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in OBJECTS[:1]]
    api_list = write(tmp_path / "list.json", {"kind": "ServiceList", "apiVersion": "v1", "items": items}, as_json=True)
    docs = tmp_path / "docs.yaml"
    docs.write_text(yaml.safe_dump(OBJECTS[1]) + "---\n" + yaml.safe_dump(OBJECTS[2]) + "---\n")
    _, index = load([api_list, docs])
    assert index.service("app", "web") is not None and index.service("other", "db") is not None
    assert len(index.slices("app", "web")) == 1


def test_filters_keep_what_the_stanza_serves(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", as_list(OBJECTS))
    _, index = load([path], Filters(namespaces=frozenset({"app"})))
    assert index.service("other", "db") is None and index.service("app", "web") is not None
    assert index.counts()["pods"] == 0  # pods only for `pods verified`
    _, index = load([path], Filters(selector=parse_selector("tier=front"), endpoints=False))
    assert index.service("other", "db") is None and index.slices("app", "web") == ()
    assert index.service_export("app", "web") is not None  # MCS objects are not label-filtered


def test_malformed_objects_are_skipped_counted_and_logged_once(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "interkube.plugin.kubernetes")
    bad = service("app", "bad", cluster_ips=["10.96.0.40"])
    bad["spec"]["ports"][0]["port"] = "eighty"
    bad_slice = endpoint_slice("app", "bad-1", "web", [{"ip": "10.244.300.1"}])
    path = write(tmp_path / "c.yaml", as_list([*OBJECTS, bad, bad_slice]))
    cluster, index = load([path])
    assert index.service("app", "bad") is None and index.service("app", "web") is not None
    assert cluster.stats.skipped == {"services": 1, "endpointslices": 1}
    source = cluster.source
    assert isinstance(source, SnapshotSource)
    from interkube.kube.snapshot import build_index

    build_index(source.paths, source.filters, cluster)  # read again: counted again, not logged again
    assert cluster.stats.skipped == {"services": 2, "endpointslices": 2}
    lines = [r.getMessage() for r in caplog.records]
    assert len([m for m in lines if "app/bad:" in m]) == 1
    assert any("endpointslices app/bad-1" in m and "is not an IP address" in m for m in lines)


def test_unreadable_files_are_errors_naming_the_place(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("items:\n  - kind: Service\n    metadata: {name: [unclosed\n")
    with pytest.raises(SnapshotError, match=rf"{broken}:\d+: not valid YAML"):
        load([broken])
    with pytest.raises(SnapshotError, match="cannot read snapshot"):
        load([tmp_path / "absent.yaml"])
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just words\n")
    with pytest.raises(SnapshotError, match="not a mapping"):
        load([scalar])


async def test_a_changed_file_is_read_again_and_swapped_in(tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path / "c.yaml", as_list(OBJECTS))
    cluster, first = load([path])
    source = cluster.source
    assert isinstance(source, SnapshotSource)
    seen: list[object] = []
    cluster.subscribe(lambda index, keys: seen.append(keys))
    assert not await source.check(cluster)  # nothing changed
    # web and its slice go, new comes: 5 -> 4 objects, a drop within snapshot_max_drop's 50%
    # (larger ones are refused: test_kube_snapshot_guard.py).
    write(path, as_list([*OBJECTS[2:], service("app", "new", cluster_ips=["10.96.0.50"])]))
    os.utime(path, ns=(1, 1))  # a different stamp even within the same clock tick
    assert await source.check(cluster)
    assert cluster.index is not first and cluster.index.service("app", "new") is not None
    assert seen == [None] and cluster.stats.relists == 1
    # A broken edit keeps the last good data, reported once per change.
    caplog.set_level(logging.INFO, "interkube.plugin.kubernetes")
    path.write_text("items: [")
    assert not await source.check(cluster)
    assert not await source.check(cluster)
    assert cluster.index.service("app", "new") is not None
    assert len([r for r in caplog.records if "not reloading" in r.getMessage()]) == 1
    # A vanished file: the cluster is down (sync age grows) until it is back.
    path.unlink()
    assert not await source.check(cluster)
    assert cluster.down is not None and "cannot read snapshot" in cluster.down
    write(path, as_list(OBJECTS))
    assert await source.check(cluster)
    assert cluster.down is None and cluster.index.service("app", "new") is None

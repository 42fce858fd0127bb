"""A changed snapshot that does not look like the cluster is refused and the served data kept:
emptied files, files cut short, Lists that are not complete, drops beyond snapshot_max_drop.

kubectl's own output (tests/plugins/kubernetes/data/cluster.yaml) is what is cut here: it writes
``kind: List`` after the items, so a cut anywhere inside it leaves a List without its kind.
"""

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
from interkube.kube.snapshot import DROP, EMPTY, INCOMPLETE, INVALID, IncompleteList, SnapshotSource
from interkube.pkg.atomicfile import write_atomically
from testkit.fakekube import as_list, service

KUBECTL_YAML = Path(__file__).parents[1] / "plugins" / "kubernetes" / "data" / "cluster.yaml"


def services(n: int, prefix: str = "svc") -> list[dict[str, Any]]:
    return [service("app", f"{prefix}-{i}", cluster_ips=[f"10.96.1.{i}"]) for i in range(n)]


class Snap:
    """One snapshot file and its source (checked by hand, not started), changed one state at a time."""

    def __init__(self, path: Path, content: str, max_drop: int = 50) -> None:
        self.path = path
        self.version = 0
        self.put(content)
        self.source = SnapshotSource((str(path),), Filters(pods=True), max_drop=max_drop)
        self.cluster = Cluster("snap", self.source)
        self.cluster.preload(self.source.load(self.cluster))

    def put(self, content: str | bytes) -> None:
        """The file holds ``content`` now, with a stamp no earlier state had."""
        write_atomically(self.path, content, fsync=False)
        self.version += 1
        os.utime(self.path, ns=(self.version, self.version))

    async def change(self, content: str | bytes) -> bool:
        self.put(content)
        return await self.source.check(self.cluster)

    @property
    def index(self) -> ClusterIndex:
        assert self.cluster.index is not None
        return self.cluster.index


def as_yaml(objects: list[dict[str, Any]]) -> str:
    return yaml.safe_dump(as_list(objects), sort_keys=True)


@pytest.fixture
def log_lines(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, "interkube.plugin.kubernetes")
    return caplog


def messages(caplog: pytest.LogCaptureFixture, part: str) -> list[str]:
    """The messages logged so far in this test that hold ``part``."""
    return [r.getMessage() for r in caplog.records if part in r.getMessage()]


async def test_an_emptied_file_keeps_the_data(tmp_path: Path, log_lines: pytest.LogCaptureFixture) -> None:
    snap = Snap(tmp_path / "c.yaml", KUBECTL_YAML.read_text())
    served = snap.index
    before = sum(served.counts().values())
    # Truncated to zero bytes (what `> FILE` does first), YAML without a Kubernetes object, and
    # a complete List with no items (a kubectl that looked at the wrong cluster).
    empty_list = yaml.safe_dump(as_list([]))
    for content in ("", "hello: world\n", empty_list):
        assert not await snap.change(content)
        assert snap.index is served and snap.source.refused == EMPTY
    assert snap.cluster.stats.refused == {EMPTY: 3}
    assert snap.cluster.stats.relists == 0
    refusals = messages(log_lines, "not reloading")
    assert len(refusals) == 3
    assert f"{tmp_path / 'c.yaml'} gave {before} objects and now gives none" in refusals[0]
    assert f"{before} -> 0 objects" in refusals[0]
    assert "serving the previous data (17 services, " in refusals[0]


async def test_a_file_cut_short_or_not_a_complete_list_keeps_the_data(tmp_path: Path,
                                                                     log_lines: pytest.LogCaptureFixture) -> None:
    text = KUBECTL_YAML.read_text()
    snap = Snap(tmp_path / "c.yaml", text)
    served = snap.index
    whole = yaml.safe_load(text)
    cases = [
        (text[: len(text) // 2], INCOMPLETE),   # YAML cut mid-list: parses, but has no kind
        (text[: text.index("\nkind: List")], INCOMPLETE),   # every item there, the kind not yet
        (json.dumps(whole)[:5000], INVALID),    # JSON cut short does not parse
        (json.dumps({k: v for k, v in whole.items() if k != "kind"}), INCOMPLETE),
        (yaml.safe_dump({"apiVersion": "v1", "kind": "List", "metadata": {}}), INCOMPLETE),  # no items
        (yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": None}), INCOMPLETE),
        ("items:\n  - kind: Service\n    metadata: {name: [unclosed\n", INVALID),
    ]
    for content, reason in cases:
        assert not await snap.change(content), content[-80:]
        assert snap.index is served and snap.source.refused == reason
    assert snap.cluster.stats.refused == {INCOMPLETE: 5, INVALID: 2}
    cut = messages(log_lines, "not reloading")[0]
    assert "not a complete List: it has items but it has no kind" in cut
    assert "objects" in cut and " -> " in cut


async def test_a_legitimate_change_applies_and_its_log_line_gives_the_counts(
        tmp_path: Path, log_lines: pytest.LogCaptureFixture) -> None:
    snap = Snap(tmp_path / "c.yaml", as_yaml(services(10)))
    # A refused state first: the next good file is taken all the same.
    assert not await snap.change("")
    assert await snap.change(as_yaml([*services(9), service("app", "new", cluster_ips=["10.96.2.1"])]))
    assert snap.index.service("app", "new") is not None and snap.index.service("app", "svc-9") is None
    assert snap.source.refused is None and snap.cluster.stats.relists == 1
    assert messages(log_lines, "reloaded")[-1].endswith(": 10 -> 10 objects (10 services; was 10 services)")
    # The new kubectl output, as it comes (kind: List last): taken whole.
    assert await snap.change(KUBECTL_YAML.read_text())
    assert snap.index.counts()["services"] == 17


async def test_a_drop_beyond_max_drop_is_refused_and_one_within_it_applies(
        tmp_path: Path, log_lines: pytest.LogCaptureFixture) -> None:
    snap = Snap(tmp_path / "c.yaml", as_yaml(services(10)))
    served = snap.index
    assert not await snap.change(as_yaml(services(4)))      # 60% fewer
    assert snap.index is served and snap.source.refused == DROP
    assert messages(log_lines, "not reloading")[-1].startswith(
        f"cluster snap: not reloading the snapshot: {tmp_path / 'c.yaml'}: 10 -> 4 objects, 60% fewer, more than the "
        "50% that snapshot_max_drop allows; serving the previous data (10 services)")
    assert await snap.change(as_yaml(services(5)))          # 50%: allowed
    assert snap.index.counts()["services"] == 5
    assert snap.cluster.stats.refused == {DROP: 1}
    # The share is of the data served now, not of the data before a refusal.
    assert not await snap.change(as_yaml(services(2)))
    assert await snap.change(as_yaml(services(3)))

    # 0% refuses any drop; 100% allows any, but a file that gave objects still never gives none.
    strict = Snap(tmp_path / "strict.yaml", as_yaml(services(10)), max_drop=0)
    assert not await strict.change(as_yaml(services(9)))
    assert await strict.change(as_yaml(services(11)))
    lax = Snap(tmp_path / "lax.yaml", as_yaml(services(10)), max_drop=100)
    assert await lax.change(as_yaml(services(1)))
    assert not await lax.change(as_yaml([])) and lax.source.refused == EMPTY


async def test_several_files_are_judged_together_and_each_on_its_own(tmp_path: Path) -> None:
    big, small = tmp_path / "big.yaml", tmp_path / "small.yaml"
    write_atomically(big, as_yaml(services(20)))
    write_atomically(small, as_yaml(services(2, "small")))
    source = SnapshotSource((str(big), str(small)), Filters())
    cluster = Cluster("two", source)
    cluster.preload(source.load(cluster))
    # The small file emptied: 10% of the cluster, but a file that gave objects gives none.
    write_atomically(small, "")
    assert not await source.check(cluster) and source.refused == EMPTY
    write_atomically(small, as_yaml(services(1, "small")))
    assert await source.check(cluster)
    assert cluster.index is not None and cluster.index.counts()["services"] == 21


async def test_refused_data_is_not_called_current(tmp_path: Path) -> None:
    snap = Snap(tmp_path / "c.yaml", as_yaml(services(4)))
    assert not await snap.source.check(snap.cluster)
    assert not await snap.change("")
    snap.cluster.last_contact = 0.0  # long ago: a check that called the data current would move it
    assert not await snap.source.check(snap.cluster)
    assert snap.cluster.last_contact == 0.0 and snap.cluster.down is None  # old, not down
    assert await snap.change(as_yaml(services(4)))
    assert snap.cluster.last_contact > 0.0


def test_at_start_up_an_empty_file_is_an_empty_cluster_and_a_cut_one_an_error(
        tmp_path: Path, log_lines: pytest.LogCaptureFixture) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    source = SnapshotSource((str(empty),), Filters())
    index = source.load(Cluster("e", source))
    assert sum(index.counts().values()) == 0
    assert messages(log_lines, f"snapshot {empty} holds no objects to serve")
    cut = tmp_path / "cut.yaml"
    text = KUBECTL_YAML.read_text()
    cut.write_text(text[: len(text) // 2])
    with pytest.raises(IncompleteList, match=rf"{cut}: not a complete List: it has items but it has no kind"):
        SnapshotSource((str(cut),), Filters()).load(Cluster("c", source))

"""The k8s_external tests' cluster (k8s_external_data.py) as a snapshot file."""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.fakekube import write_snapshot

from k8s_external_data import objects


@pytest.fixture
def cluster(tmp_path: Path) -> Path:
    return write_snapshot(tmp_path / "cluster.yaml", objects())

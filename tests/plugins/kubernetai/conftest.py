"""The kubernetai tests' two clusters (kubernetai_data.py) as snapshot files."""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.fakekube import write_snapshot

from kubernetai_data import east_objects, west_objects


@pytest.fixture
def east(tmp_path: Path) -> Path:
    return write_snapshot(tmp_path / "east.yaml", east_objects())


@pytest.fixture
def west(tmp_path: Path) -> Path:
    return write_snapshot(tmp_path / "west.yaml", west_objects())

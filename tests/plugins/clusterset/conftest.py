"""Fixtures of the clusterset tests: the three clusters' snapshot files (see clusterset_data.py)
and Corefiles serving them. Running servers come from the `serve` fixture of
tests/plugins/conftest.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.fakekube import write_snapshot

from clusterset_data import CLUSTERS, SHORT, cluster_objects


@pytest.fixture
def snapshots(tmp_path: Path) -> dict[str, Path]:
    """cluster name -> its snapshot file."""
    return {name: write_snapshot(tmp_path / f"{SHORT[name]}.yaml", cluster_objects(name)) for name in CLUSTERS}

"""Everything under tests/peers compares with or runs against the real peers (the fixtures are
in testkit.peerfixtures, shared with other directories): mark it ``peers``, so that
``-m "not peers"`` deselects it."""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.peers)

"""The lab (interkube.lab) as pytest fixtures: build labs from plans, always torn down.

``lab_up(plan, **options)`` builds a lab from a plan file path or plan text (YAML) in the
test's temporary folder and returns the :class:`~interkube.lab.build.Lab`; every lab built is
brought down at the end of the test, whatever happened (``down`` stops its processes by PID and
deletes its namespaces by name). Tests using it skip, with the reason, where the lab cannot run
(not root, no ``ip``/``nft``, no network namespaces).

    def test_something(lab_up):
        lab = lab_up(PLAN_TEXT)
        reply = lab.query("cluster1", "client", "web.shop.svc.cluster.local")
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from interkube.lab.build import Lab
from interkube.lab.netns import missing

LabUp = Callable[..., Lab]


def require_lab() -> None:
    """Skip the test, saying why, where the lab cannot be built."""
    why = missing()
    if why:
        pytest.skip(why)


def plan_file(directory: Path, plan: str | Path, name: str = "plan.yaml") -> Path:
    """``plan`` as a file: a path as it is, text written to ``directory/name``."""
    if isinstance(plan, Path):
        return plan
    path = directory / name
    path.write_text(plan)
    return path


@pytest.fixture
def lab_up(tmp_path: Path) -> Iterator[LabUp]:
    require_lab()
    labs: list[Lab] = []

    def up(plan: str | Path, **options: Any) -> Lab:
        index = len(labs)
        lab = Lab.up(plan_file(tmp_path, plan, f"plan{index}.yaml"), tmp_path / f"lab{index}", **options)
        labs.append(lab)
        return lab

    try:
        yield up
    finally:
        failed = [f for lab in labs for f in lab.down()]
        assert not failed, f"lab namespaces left behind: {failed}"

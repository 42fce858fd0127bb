"""Shared fixtures of the netplan tests: plans from YAML text, and the example plans."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from interkube.netplan.parse import parse_plan
from interkube.netplan.rules import Report, check

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "plans"


@pytest.fixture
def check_yaml() -> Callable[[str], Report]:
    """Check a plan written as (indented) YAML text."""
    def run(text: str) -> Report:
        return check(parse_plan(textwrap.dedent(text), file="plan.yaml"))
    return run


@pytest.fixture
def examples() -> Path:
    return EXAMPLES

"""Helpers of the webhook tests: ``interkube render webhook`` called as the command would call it.

(A module of its own, not conftest.py: every test folder has a conftest, and only one of them can
be imported by that name.)"""

from __future__ import annotations

import argparse
from typing import Any

from interkube.webhook import manifests
from testkit.webhook import NAMESERVER


def render_args(*argv: str) -> argparse.Namespace:
    """``interkube render webhook ARGV`` parsed (with -o - and one nameserver unless given)."""
    parser = argparse.ArgumentParser()
    manifests.add_arguments(parser)
    words = list(argv)
    if "--nameserver" not in words:
        words += ["--nameserver", NAMESERVER]
    return parser.parse_args([*words, "-o", "-"])


def rendered(*argv: str) -> list[dict[str, Any]]:
    return manifests.render(render_args(*argv))


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]

"""What a doctor check returns: findings, each a level, the evidence and a fix, and their report.

A check is a small function returning a list of :class:`Finding`; the command prints them as a
table or as JSON (the same data), and exits 1 when any is a failure.
"""

from __future__ import annotations

import enum
import json
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


class Level(enum.IntEnum):
    """How a check came out; only ``FAIL`` makes the command exit non-zero."""

    OK = 0
    #: Not checked (a part that is absent, a check that needs something not given), or a remark.
    NOTE = 1
    WARN = 2
    FAIL = 3

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Finding:
    """One result: ``id`` names the check (``corefile.open-resolver``), ``subject`` what it looked
    at (a zone, a cluster, an upstream), ``evidence`` what it saw, ``fix`` what to do (empty when
    there is nothing to do)."""

    id: str
    level: Level
    subject: str
    evidence: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "level": str(self.level), "subject": self.subject,
                "evidence": self.evidence, "fix": self.fix}


def ok(id: str, subject: str, evidence: str) -> Finding:
    return Finding(id, Level.OK, subject, evidence)


def note(id: str, subject: str, evidence: str, fix: str = "") -> Finding:
    return Finding(id, Level.NOTE, subject, evidence, fix)


def warn(id: str, subject: str, evidence: str, fix: str) -> Finding:
    return Finding(id, Level.WARN, subject, evidence, fix)


def fail(id: str, subject: str, evidence: str, fix: str) -> Finding:
    return Finding(id, Level.FAIL, subject, evidence, fix)


def worst(findings: Iterable[Finding]) -> Level:
    return max((f.level for f in findings), default=Level.OK)


def counts(findings: Sequence[Finding]) -> dict[str, int]:
    return {str(level): sum(1 for f in findings if f.level is level) for level in Level}


def render_text(findings: Sequence[Finding], width: int = 100) -> str:
    """One line per finding (level, id, subject), its evidence and fix indented below it."""
    lines: list[str] = []
    indent = " " * 7
    for f in findings:
        lines.append(f"{f.level!s:<6} {f.id}  {f.subject}")
        lines += textwrap.wrap(f.evidence, width, initial_indent=indent, subsequent_indent=indent) or [indent]
        if f.fix:
            lines += textwrap.wrap(f"fix: {f.fix}", width, initial_indent=indent,
                                   subsequent_indent=indent + "     ")
    c = counts(findings)
    verdict = "FAILED" if worst(findings) is Level.FAIL else "ok"
    lines.append(f"{c['ok']} ok, {c['warn']} warn, {c['fail']} fail, {c['note']} notes: {verdict}")
    return "\n".join(lines) + "\n"


def to_json(findings: Sequence[Finding]) -> dict[str, Any]:
    return {"ok": worst(findings) is not Level.FAIL, "counts": counts(findings),
            "findings": [f.to_dict() for f in findings]}


def render_json(findings: Sequence[Finding]) -> str:
    return json.dumps(to_json(findings), indent=2) + "\n"


def from_dicts(items: Iterable[dict[str, Any]]) -> list[Finding]:
    """Findings read back from :meth:`Finding.to_dict` (a probe run in another namespace)."""
    return [Finding(str(i["id"]), Level[str(i["level"]).upper()], str(i["subject"]), str(i["evidence"]),
                    str(i.get("fix", ""))) for i in items]

"""The plan check: every rule of ``interkube check`` (R1-R10), as doctor findings."""

from __future__ import annotations

from interkube.doctor.findings import Finding, Level, ok
from interkube.netplan.model import Plan
from interkube.netplan.rules import RULES_BY_ID, Severity, check

_LEVELS = {Severity.ERROR: Level.FAIL, Severity.WARNING: Level.WARN, Severity.INFO: Level.NOTE}


def check_plan(plan: Plan) -> list[Finding]:
    """One finding per finding of the address-plan rules, or one ``ok`` when there is none."""
    report = check(plan)
    source = plan.source or "the plan"
    out = []
    for f in report.findings:
        where = "; ".join(dict.fromkeys(i.where for i in f.involved if i.where != "built in"))
        evidence = f"{f.message}" + (f" (at {where})" if where else "")
        subject = f"{f.rule} {RULES_BY_ID[f.rule].title}: {', '.join(f.subjects) or source}"
        out.append(Finding(f"plan.{f.rule}", _LEVELS[f.severity], subject, evidence, f.fix))
    if not any(f.level >= Level.WARN for f in out):
        names = ", ".join(c.name for c in plan.clusters)
        out.append(ok("plan.rules", source, f"{len(plan.clusters)} clusters ({names}): no rule of R1-R10 broken"))
    return out

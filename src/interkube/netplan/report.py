"""A check :class:`~interkube.netplan.rules.Report` as a terminal table or as JSON."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from typing import Any

from interkube.netplan.model import AddressRange, Cluster, Plan
from interkube.netplan.rules import RULES_BY_ID, Report, Severity


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in (header, *rows)]


def _ranges(ranges: Sequence[AddressRange], inferred: bool = False) -> str:
    text = ", ".join(str(r.network) for r in ranges) or "-"
    return f"{text} (inferred)" if inferred and ranges else text


def _dns(cluster: Cluster) -> str:
    if cluster.dns is None:
        return "-"
    service = str(cluster.dns.service) if cluster.dns.service else "?"
    count = len(cluster.dns.endpoints)
    return f"{service} ({count} endpoint{'s' if count != 1 else ''})" if count else service


def plan_lines(plan: Plan) -> list[str]:
    """The plan as tables: clusters, external networks, links."""
    lines = _table(
        ("CLUSTER", "NETWORKING", "NODES", "PODS", "SERVICES", "DNS"),
        [(c.name, c.networking.value + (" (assumed)" if "networking" in c.inferred else ""),
          _ranges(c.nodes, "nodes" in c.inferred), _ranges(c.pods, "pods" in c.inferred),
          _ranges(c.services, "services" in c.inferred), _dns(c))
         for c in plan.clusters],
    )
    if plan.external:
        lines.append("")
        lines += _table(("EXTERNAL", "KIND", "CIDRS"),
                        [(e.name, e.kind, _ranges(e.cidrs)) for e in plan.external])
    if plan.links:
        lines.append("")
        flags = ("nat", "pod_traffic", "service_proxy")
        lines += _table(("LINK", "KIND", "BETWEEN", "FLAGS"),
                        [(link.name or "-", link.kind.value, ", ".join(link.between),
                          ", ".join(f for f in flags if getattr(link, f)) or "-")
                         for link in plan.links])
    return lines


def render_text(report: Report, width: int = 100) -> str:
    """The plan and the findings, worst first, wrapped to ``width`` columns."""
    lines = plan_lines(report.plan)
    lines.append("")
    indent = " " * 15
    for finding in report.findings:
        head = f"{finding.severity!s:<8} {finding.rule:<4}  "
        lines += textwrap.wrap(finding.message, width, initial_indent=head, subsequent_indent=indent)
        lines += textwrap.wrap(f"fix: {finding.fix}", width, initial_indent=indent, subsequent_indent=indent + "     ")
        for involved in finding.involved:
            if involved.where != "built in":
                lines.append(f"{indent}at:  {involved.where}")
    errors, warnings, notes = (report.count(s) for s in (Severity.ERROR, Severity.WARNING, Severity.INFO))
    verdict = "FAILED" if not report.ok else "ok"
    lines.append(f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}, "
                 f"{notes} note{'s' * (notes != 1)}: {verdict}")
    return "\n".join(lines) + "\n"


def report_to_dict(report: Report) -> dict[str, Any]:
    """Findings and counts as JSON-ready values."""
    return {
        "ok": report.ok,
        "source": report.plan.source,
        "counts": {str(s): report.count(s) for s in (Severity.ERROR, Severity.WARNING, Severity.INFO)},
        "clusters": [c.name for c in report.plan.clusters],
        "findings": [
            {
                "rule": f.rule,
                "title": RULES_BY_ID[f.rule].title,
                "severity": str(f.severity),
                "message": f.message,
                "fix": f.fix,
                "subjects": list(f.subjects),
                "involved": [{"owner": i.owner, "role": i.role.value, "value": i.value, "where": i.where}
                             for i in f.involved],
            }
            for f in report.findings
        ],
    }


def render_json(report: Report) -> str:
    return json.dumps(report_to_dict(report), indent=2) + "\n"

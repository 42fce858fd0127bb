"""A check report as an SVG picture: every cluster's ranges on the address line, conflicts marked.

One panel per IP family. The address line is not to scale: a linear axis would shrink a /24
next to 10.0.0.0/8 to nothing. Instead the line is cut at every range boundary and each piece
gets a width that grows with the logarithm of its size, which keeps order, nesting and overlap
visible at any scale. Each cluster (and external network) has a row with three lanes: nodes,
pods, Services. A conflict is a red band over the addresses concerned, across the rows of the
clusters involved, numbered to the list of findings below the panels.

The SVG is written by hand (no dependency); text goes through XML escaping.
"""

from __future__ import annotations

import bisect
import ipaddress
import itertools
import math
import textwrap
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from interkube.netplan.model import IPNetwork, Role
from interkube.netplan.rules import Finding, Report, Severity
from interkube.netplan.sweep import merge_intervals

LABEL_WIDTH = 170
PLOT_WIDTH = 900
MARGIN = 20
ROW_HEIGHT = 30
LANE_HEIGHT = 7
AXIS_HEIGHT = 110
LINE_HEIGHT = 16
GAP_WEIGHT = 3.0
RIGHT_PAD = 90  # rotated tick labels lean right past the end of the axis
COLOURS = {
    Role.NODES: "#4e79a7",
    Role.PODS: "#59a14f",
    Role.SERVICES: "#f28e2b",
    Role.EXTERNAL: "#9c755f",
}
LANES = {Role.NODES: 0, Role.PODS: 1, Role.SERVICES: 2, Role.EXTERNAL: 1}
SEVERITY_COLOURS = {Severity.ERROR: "#d62728", Severity.WARNING: "#e6a100", Severity.INFO: "#7f7f7f"}


@dataclass(frozen=True)
class _Bar:
    row: int
    role: Role
    network: IPNetwork


@dataclass(frozen=True)
class _Conflict:
    number: int
    finding: Finding
    rows: tuple[int, ...]
    network: IPNetwork  # the addresses in conflict


def _as_network(text: str) -> IPNetwork | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def _subnet_of(inner: IPNetwork, outer: IPNetwork) -> bool:
    """``inner.subnet_of(outer)`` for two networks of either version (False across versions)."""
    if isinstance(inner, ipaddress.IPv4Network) and isinstance(outer, ipaddress.IPv4Network):
        return inner.subnet_of(outer)
    if isinstance(inner, ipaddress.IPv6Network) and isinstance(outer, ipaddress.IPv6Network):
        return inner.subnet_of(outer)
    return False


class _Axis:
    """Maps the boundaries of the drawn ranges to x positions, log-compressed."""

    def __init__(self, networks: list[IPNetwork]) -> None:
        points = sorted({p for n in networks
                         for p in (int(n.network_address), int(n.broadcast_address) + 1)})
        covered = merge_intervals((int(n.network_address), int(n.broadcast_address)) for n in networks)
        starts = [start for start, _ in covered]

        def weight(a: int, b: int) -> float:
            i = bisect.bisect_right(starts, a) - 1
            in_use = i >= 0 and covered[i][1] >= a
            # Unused stretches between ranges get a short fixed gap, whatever their size.
            return math.log2(b - a) + 1 if in_use else GAP_WEIGHT

        weights = [weight(a, b) for a, b in itertools.pairwise(points)]
        total = sum(weights) or 1.0
        self.points = points
        self.x: list[float] = [0.0]
        for w in weights:
            self.x.append(self.x[-1] + w / total * PLOT_WIDTH)

    def span(self, network: IPNetwork) -> tuple[float, float]:
        start = self.x[bisect.bisect_left(self.points, int(network.network_address))]
        end = self.x[bisect.bisect_left(self.points, int(network.broadcast_address) + 1)]
        return LABEL_WIDTH + start, LABEL_WIDTH + max(end, start + 1.0)


def render_svg(report: Report) -> str:
    """The picture as SVG text."""
    plan = report.plan
    owners = [c.name for c in plan.clusters] + [e.name for e in plan.external]
    row_of = {name: i for i, name in enumerate(owners)}
    bars: list[_Bar] = []
    for cluster in plan.clusters:
        for role in (Role.NODES, Role.PODS, Role.SERVICES):
            bars += [_Bar(row_of[cluster.name], role, r.network) for r in cluster.ranges(role)]
    for ext in plan.external:
        bars += [_Bar(row_of[ext.name], Role.EXTERNAL, r.network) for r in ext.cidrs]

    conflicts = _conflicts(report, row_of)
    out: list[str] = []
    y = MARGIN
    errors = report.count(Severity.ERROR)
    warnings = report.count(Severity.WARNING)
    title = (f"interkube address plan: {_count(len(plan.clusters), 'cluster')}, {_count(errors, 'error')}, "
             f"{_count(warnings, 'warning')}")
    out.append(_text(MARGIN, y + 14, title, size=16, weight="bold"))
    y += 30
    out += _legend(y)
    y += 30
    for version in (4, 6):
        family_bars = [b for b in bars if b.network.version == version]
        if not family_bars:
            continue
        family_conflicts = [c for c in conflicts if c.network.version == version]
        panel, height = _panel(version, family_bars, family_conflicts, owners, y)
        out += panel
        y += height + MARGIN
    if not bars:
        out.append(_text(MARGIN, y + 14, "the plan has no address ranges"))
        y += 30
    numbered = {id(c.finding): c.number for c in conflicts}
    # Numbered conflicts first, in their order, then the other findings.
    for finding in sorted(report.findings, key=lambda f: numbered.get(id(f), len(numbered) + 1)):
        lines = _finding_lines(numbered.get(id(finding)), finding, y)
        out += lines
        y += LINE_HEIGHT * len(lines)
    width = LABEL_WIDTH + PLOT_WIDTH + MARGIN + RIGHT_PAD
    height = y + MARGIN
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">')
    background = f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>'
    return "\n".join(['<?xml version="1.0" encoding="UTF-8"?>', head, background, *out, "</svg>"]) + "\n"


def _conflicts(report: Report, row_of: dict[str, int]) -> list[_Conflict]:
    """Findings that concern addresses, with the addresses they share, numbered."""
    out: list[_Conflict] = []
    for finding in report.findings:
        if finding.severity is Severity.INFO:
            continue
        networks = [n for n in (_as_network(i.value) for i in finding.involved) if n is not None]
        if not networks or len({n.version for n in networks}) != 1:
            continue
        # CIDR blocks nest, so when they all overlap the smallest is what they share.
        shared = max(networks, key=lambda n: n.prefixlen)
        if not all(_subnet_of(shared, n) for n in networks):
            shared = min(networks, key=lambda n: n.prefixlen)  # unrelated ranges: mark the widest
        rows = tuple(sorted({row_of[i.owner] for i in finding.involved if i.owner in row_of}))
        if rows:
            out.append(_Conflict(len(out) + 1, finding, rows, shared))
    return out


def _panel(version: int, bars: list[_Bar], conflicts: list[_Conflict], owners: list[str],
           top: int) -> tuple[list[str], int]:
    axis = _Axis([b.network for b in bars] + [c.network for c in conflicts])
    rows_top = top + AXIS_HEIGHT
    out = [_text(MARGIN, top + 14, f"IPv{version}", size=14, weight="bold")]
    # Tick labels at range starts, rotated, skipping those that would overprint the last one.
    last_x = -1e9
    for point, x in zip(axis.points, axis.x, strict=True):
        px = LABEL_WIDTH + x
        out.append(f'<line x1="{px:.1f}" y1="{rows_top - 4}" x2="{px:.1f}" y2="{rows_top + len(owners) * ROW_HEIGHT}" '
                   'stroke="#e0e0e0" stroke-width="0.5"/>')
        if px - last_x >= 11 and point < (1 << (32 if version == 4 else 128)):
            address = ipaddress.ip_address(point) if version == 4 else ipaddress.IPv6Address(point)
            out.append(f'<text x="{px:.1f}" y="{rows_top - 8}" font-size="9" fill="#333333" '
                       f'transform="rotate(-60 {px:.1f} {rows_top - 8})">{escape(str(address))}</text>')
            last_x = px
    for row, owner in enumerate(owners):
        y = rows_top + row * ROW_HEIGHT
        fill = "#f7f7f7" if row % 2 == 0 else "#ffffff"
        out.append(f'<rect x="{MARGIN}" y="{y}" width="{LABEL_WIDTH + PLOT_WIDTH - MARGIN}" height="{ROW_HEIGHT}" '
                   f'fill="{fill}"/>')
        out.append(f'<text class="owner" x="{MARGIN}" y="{y + ROW_HEIGHT / 2 + 4:.1f}" font-size="12">'
                   f'{escape(owner)}</text>')
    for bar in bars:
        x1, x2 = axis.span(bar.network)
        y = rows_top + bar.row * ROW_HEIGHT + 4 + LANES[bar.role] * (LANE_HEIGHT + 1)
        dash = ' stroke-dasharray="3,2"' if bar.role is Role.SERVICES else ""
        out.append(f'<rect class="range {bar.role.value}" x="{x1:.1f}" y="{y}" width="{x2 - x1:.1f}" '
                   f'height="{LANE_HEIGHT}" fill="{COLOURS[bar.role]}" fill-opacity="0.85" '
                   f'stroke="#333333" stroke-width="0.5"{dash}><title>{escape(owners[bar.row])} '
                   f'{bar.role.value} {bar.network}</title></rect>')
    for conflict in conflicts:
        x1, x2 = axis.span(conflict.network)
        colour = SEVERITY_COLOURS[conflict.finding.severity]
        y1 = rows_top + conflict.rows[0] * ROW_HEIGHT
        y2 = rows_top + (conflict.rows[-1] + 1) * ROW_HEIGHT
        out.append(f'<rect class="conflict {conflict.finding.rule}" x="{x1 - 1:.1f}" y="{y1}" '
                   f'width="{x2 - x1 + 2:.1f}" height="{y2 - y1}" fill="{colour}" fill-opacity="0.25" '
                   f'stroke="{colour}" stroke-width="1.5"><title>{escape(conflict.finding.message)}</title></rect>')
        out.append(f'<circle cx="{x2 + 8:.1f}" cy="{y1 + 8}" r="7" fill="{colour}"/>')
        out.append(f'<text x="{x2 + 8:.1f}" y="{y1 + 11}" font-size="9" fill="#ffffff" text-anchor="middle">'
                   f'{conflict.number}</text>')
    return out, AXIS_HEIGHT + len(owners) * ROW_HEIGHT


def _legend(y: int) -> list[str]:
    out = []
    x = MARGIN
    for role, label in ((Role.NODES, "nodes"), (Role.PODS, "pods"), (Role.SERVICES, "Service VIPs"),
                        (Role.EXTERNAL, "external network")):
        out.append(f'<rect x="{x}" y="{y}" width="14" height="{LANE_HEIGHT + 3}" fill="{COLOURS[role]}"/>')
        out.append(_text(x + 18, y + 9, label, size=11))
        x += 40 + 7 * len(label)
    out.append(f'<rect x="{x}" y="{y}" width="14" height="{LANE_HEIGHT + 3}" fill="{SEVERITY_COLOURS[Severity.ERROR]}" '
               'fill-opacity="0.25" stroke="#d62728"/>')
    out.append(_text(x + 18, y + 9, "conflict (numbered below)", size=11))
    return out


def _finding_lines(number: int | None, finding: Finding, y: int) -> list[str]:
    colour = SEVERITY_COLOURS[finding.severity]
    prefix = f"{number}. " if number is not None else "- "
    # SVG text does not wrap; about 170 characters of 11px text fill the picture's width.
    wrapped = textwrap.wrap(f"{prefix}{finding.rule} {finding.severity}: {finding.message}", 170,
                            subsequent_indent="    ")
    return [f'<text class="finding" x="{MARGIN}" y="{y + 12 + i * LINE_HEIGHT}" font-size="11" '
            f'fill="{colour}" xml:space="preserve">{escape(line)}</text>' for i, line in enumerate(wrapped)]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _text(x: float, y: float, text: str, size: int = 12, weight: str = "normal") -> str:
    return (f'<text x="{x}" y="{y}" font-size="{size}" font-weight={quoteattr(weight)}>'
            f'{escape(text)}</text>')


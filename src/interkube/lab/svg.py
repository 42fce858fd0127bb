"""A lab as an SVG picture (`interkube lab status --svg FILE`).

One column per cluster: the router on top (its node-network address), the nodes under it, and
each node's pods with their addresses; the pod or node running the cluster's DNS server is
marked **DNS** (with the namespaces it forwards and where to), the router running `interkube
proxy` **proxy**. External networks and hubs are boxes of their own on the right. Links are
lines between routers (and hubs), labelled with the plan's link name. Colours are those of
`interkube check --svg` (netplan/svg.py): nodes blue, pods green, Services orange, external
networks brown. Plain SVG 1.1, written by hand as netplan's is.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape, quoteattr

from interkube.netplan.model import Role
from interkube.netplan.svg import COLOURS

COLUMN = 300
MARGIN = 20
ROUTER_H = 44
POD_H = 34
NODE_GAP = 14
TOP = 80


def _text(x: float, y: float, text: str, size: int = 11, weight: str = "normal", anchor: str = "start") -> str:
    return (f'<text x="{x}" y="{y}" font-size="{size}" font-weight={quoteattr(weight)} '
            f'text-anchor="{anchor}">{escape(text)}</text>')


def _box(x: float, y: float, w: float, h: float, colour: str, title: str, dash: bool = False) -> str:
    extra = ' stroke-dasharray="4 3"' if dash else ""
    return (f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="5" fill="{colour}" fill-opacity="0.15" '
            f'stroke="{colour}"{extra}><title>{escape(title)}</title></rect>')


def render_svg(status: dict[str, Any]) -> str:
    """The picture of :meth:`interkube.lab.build.Lab.status`'s data."""
    parts: list[str] = []
    anchors: dict[str, tuple[float, float]] = {}  # member -> router box centre
    clusters: dict[str, Any] = status["clusters"]
    bottom = TOP
    x = MARGIN
    for name, c in clusters.items():
        y = TOP
        w = COLUMN - 2 * MARGIN
        router_note = ", proxy" if c.get("proxy") else ""
        parts.append(_box(x, y, w, ROUTER_H, "#555555", f"router {c['router']}"))
        parts.append(_text(x + 8, y + 18, f"{name} ({c['networking']}): router{router_note}", 12, "bold"))
        public = f", {len(c['public'])} public (db.example)" if c.get("public") else ""
        parts.append(_text(x + 8, y + 34, " ".join(c["router_addresses"]) + public))
        anchors[name] = (x + w / 2, y)
        y += ROUTER_H + NODE_GAP
        dns = c["dns"]
        for index, node in enumerate(c["nodes"]):
            pods = [(p, info) for p, info in c["pods"].items() if info["node"] == index]
            height = 40 + POD_H * len(pods)
            hosts_dns = dns["netns"] == node["netns"]
            parts.append(_box(x, y, w, height, COLOURS[Role.NODES], f"node {node['netns']}"))
            label = f"node{index} {' '.join(node['addresses'])}" + (" DNS" if hosts_dns else "")
            parts.append(_text(x + 8, y + 16, label, 11, "bold"))
            parts.append(_text(x + 8, y + 30, "pods " + " ".join(node["pod_blocks"]), 10))
            py = y + 38
            for pod, info in pods:
                is_dns = dns["netns"] == info["netns"]
                colour = "#d62728" if is_dns else COLOURS[Role.PODS]
                parts.append(_box(x + 10, py, w - 20, POD_H - 4, colour, f"pod {info['netns']}"))
                weight = "bold" if is_dns else "normal"
                parts.append(_text(x + 16, py + 13, f"{pod}" + (": interkube serve" if is_dns else ""), 11, weight))
                parts.append(_text(x + 16, py + 25, f"{info['namespace']}  {' '.join(info['addresses'])}", 10))
                py += POD_H
            y += height + NODE_GAP
        services = [s for s in c["services"] if s["cluster_ips"]]
        for svc in services:
            parts.append(_box(x, y, w, 20, COLOURS[Role.SERVICES], "Service VIP (virtual)", dash=True))
            parts.append(_text(x + 8, y + 14, f"{svc['name']}.{svc['namespace']} {' '.join(svc['cluster_ips'])}", 10))
            y += 24
        if c["forward"]:
            fw = ", ".join(f"{ns} -> {to}" for ns, to in c["forward"].items())
            parts.append(_text(x, y + 12, f"DNS forwards {fw}", 11))
            y += 18
        bottom = max(bottom, y)
        x += COLUMN
    for name, e in status["external"].items():
        parts.append(_box(x, TOP, COLUMN - 2 * MARGIN, ROUTER_H, COLOURS[Role.EXTERNAL], f"external {e['netns']}"))
        parts.append(_text(x + 8, TOP + 18, f"external {name}", 12, "bold"))
        parts.append(_text(x + 8, TOP + 34, " ".join(e["addresses"])))
        anchors[name] = (x + (COLUMN - 2 * MARGIN) / 2, TOP)
        x += COLUMN
    hubs = sorted({m for link in status["links"] for m in link["between"] if m not in anchors})
    for hub in hubs:
        parts.append(_box(x, TOP, COLUMN - 2 * MARGIN, ROUTER_H, "#555555", hub))
        parts.append(_text(x + 8, TOP + 26, f"{hub} (transit)", 12, "bold"))
        anchors[hub] = (x + (COLUMN - 2 * MARGIN) / 2, TOP)
        x += COLUMN
    for i, link in enumerate(status["links"]):
        a, b = (anchors[m] for m in link["between"])
        lift = 18 + 10 * i
        path = f"M {a[0]} {a[1]} C {a[0]} {a[1] - lift - 20} {b[0]} {b[1] - lift - 20} {b[0]} {b[1]}"
        parts.append(f'<path d="{path}" fill="none" stroke="#333333" stroke-width="2">'
                     f'<title>{escape(link["link"])}</title></path>')
        parts.append(_text((a[0] + b[0]) / 2, min(a[1], b[1]) - lift - 4, link["link"], 10, anchor="middle"))
    width = max(x, 400)
    height = bottom + MARGIN
    header = _text(MARGIN, 18, f"interkube lab {status['lab']} ({status['plan']})", 13, "bold")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{width}" height="{height}" '
            f'font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n{header}\n'
            + "\n".join(parts) + "\n</svg>\n")

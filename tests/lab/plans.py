"""The plans the lab's scenario tests build (examples/lab/ and variants of them)."""

from __future__ import annotations

from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "lab"
FORWARDED = EXAMPLES / "forwarded_dns.yaml"
DISCOVERY = EXAMPLES / "discovery.yaml"
BLACK_HOLE = EXAMPLES / "vip_black_hole.yaml"

SRV = "_couchbase._tcp.cb-example-srv.remote.svc.cluster.local"


def overlay_variant() -> str:
    """The forwarded-DNS plan with cluster2 an overlay: pods in 10.244.0.0/16 behind VXLAN, its
    DNS reached on a node address (hostNetwork)."""
    text = FORWARDED.read_text()
    text = text.replace("  - name: cluster2\n", "  - name: cluster2\n    networking: overlay\n")
    text = text.replace("    pods: [10.1.0.0/16]\n", "    pods: [10.244.0.0/16]\n")
    return text.replace(", endpoints: [10.1.28.194]", "")


def black_hole_fixed() -> str:
    """The black-hole plan with the Service range moved off the client (check's own fix)."""
    return BLACK_HOLE.read_text().replace("services: [10.32.0.0/16]", "services: [10.1.0.0/16]")

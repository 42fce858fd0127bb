"""docs/deploy.md shows what `interkube render` generates for the scenario's plan, as it is today."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from interkube.deploy.render import render_argv

from deploykit import by_kind

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "deploy.md"
PLAN = "examples/plans/000_forwarded_dns_aws.yaml"
FENCE = re.compile(r"^```corefile\n(.*?)^```", re.M | re.S)


def generated(cluster: str, other: str, address: str) -> dict[str, str]:
    objects = render_argv(["--plan", PLAN, "--cluster", cluster, "--tls", "--mtls", "--issuer", "interkube-dns-ca",
                           "--cloud", "aws", "--remote-dns", f"{other}={address}"])
    return {c["metadata"]["name"].rsplit("-", 1)[0]: c["data"]["Corefile"] for c in by_kind(objects, "ConfigMap")}


def test_the_doc_shows_the_generated_corefiles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the plan's path, as the doc gives it, is written into the Corefile
    local, front = FENCE.findall(DOC.read_text())
    cluster1 = generated("cluster1", "cluster2", "10.1.0.53")["interkube"]
    cluster2_front = generated("cluster2", "cluster1", "10.0.0.53")["interkube-dot"]
    # The doc leaves out the comment lines above the first block.
    assert local == cluster1[cluster1.index("(clients) {"):]
    assert front == cluster2_front[cluster2_front.index("tls://cluster.local:853 {"):]

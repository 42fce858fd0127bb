"""Bad input to `interkube render` is an error that names where it is, and writes nothing: no
directory, no temporary left behind, a previous output left as it was, an empty stdout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deploykit import PLAN

GOOD = ".:53 {\n    health\n    ready\n    forward . /etc/resolv.conf\n}\n"


def render(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "interkube", "render", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=60)


def listing(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` (hidden ones too) and its content."""
    return {str(p.relative_to(directory)): p.read_text() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "good.Corefile").write_text(GOOD)
    (tmp_path / "plan.yaml").write_text(PLAN)
    return tmp_path


@pytest.mark.parametrize(("corefile", "message"), [
    # an unknown plugin, at its line
    (".:53 {\n    health\n    ready\n    frobnicate\n}\n", "Corefile:4: unknown plugin 'frobnicate'"),
    # a plugin's own parser refuses an option
    (".:53 {\n    health\n    ready\n    kubernetes cluster.local {\n        pods sometimes\n    }\n}\n",
     "Corefile:5: kubernetes: pods must be one of"),
    # a file the pod would not have
    ("tls://.:853 {\n    tls /etc/dot/server.crt /etc/dot/server.key\n    health\n    ready\n}\n",
     "Corefile:2: reads the tls file /etc/dot/server.crt, which the pod does not have"),
    # a health endpoint the kubelet cannot reach
    (".:53 {\n    health 127.0.0.1:8080\n    ready\n}\n", "Corefile:2: health: listens on 127.0.0.1:8080"),
    # a zone twice
    (".:53 {\n    health\n    ready\n}\n.:53 {\n    errors\n}\n",
     "Corefile:5: zone dns://.:53 is defined more than once"),
    # no probes to point the Deployment at
    (".:53 {\n    forward . /etc/resolv.conf\n}\n", "the Corefile has no health and ready"),
])
def test_corefile_error_names_its_line_and_writes_nothing(corefile: str, message: str, work: Path) -> None:
    (work / "Corefile").write_text(corefile)
    before = listing(work)
    for out in ("out", "-"):
        result = render("-conf", "Corefile", "-o", out, cwd=work)
        assert result.returncode == 1, result
        assert result.stderr.startswith("interkube render: "), result.stderr
        assert message in result.stderr, result.stderr
        assert result.stdout == ""
        assert listing(work) == before


def test_error_leaves_a_previous_output_as_it_was(work: Path) -> None:
    assert render("-conf", "good.Corefile", "-o", "out", cwd=work).returncode == 0
    before = listing(work)
    assert "out/deployment.yaml" in before and "out/kustomization.yaml" in before
    (work / "bad.Corefile").write_text(".:53 {\n    health\n    ready\n    forward\n}\n")
    result = render("-conf", "bad.Corefile", "-o", "out", cwd=work)
    assert result.returncode == 1 and "bad.Corefile:4: forward" in result.stderr, result.stderr
    assert listing(work) == {**before, "bad.Corefile": (work / "bad.Corefile").read_text()}


def test_unknown_option_is_an_error(work: Path) -> None:
    # Not taken as an abbreviation of --replicas: a typo must not silently mean something.
    before = listing(work)
    result = render("-conf", "good.Corefile", "--replica=3", "-o", "out", cwd=work)
    assert result.returncode == 2
    assert "unrecognized arguments: --replica=3" in result.stderr
    assert listing(work) == before


@pytest.mark.parametrize(("args", "message"), [
    (["--cluster", "south"], "plan.yaml: no cluster named 'south' in the plan (clusters: east, west)"),
    (["--cluster", "east", "--from-api", "north"], "plan.yaml: no cluster named 'north'"),
    (["--cluster", "east", "--tls", "--issuer", "ca", "--cloud", "gcp"],
     "plan.yaml:8: clusters[1]: cluster west: with --tls, give the address of its DoT front"),
    (["--cluster", "east", "--expose", "internal-lb"], "--expose internal-lb needs --cloud"),
    (["--cluster", "east", "--mtls"], "--mtls needs --tls"),
    (["--cluster", "east", "--split-protocols", "--expose", "internal-lb", "--cloud", "aws",
      "--load-balancer-ip", "10.0.0.9"], "AWS load balancers cannot share one address"),
    ([], "--plan needs --cluster NAME"),
])
def test_plan_errors_write_nothing(args: list[str], message: str, work: Path) -> None:
    before = listing(work)
    result = render("--plan", "plan.yaml", *args, "-o", "out", cwd=work)
    assert result.returncode == 1, result
    assert message in result.stderr, result.stderr
    assert listing(work) == before


@pytest.mark.parametrize(("old", "new", "message"), [
    ("pods: [10.1.0.0/16]", "pods: [10.1.0.0/16x]", "plan.yaml:10: clusters[1].pods[0]: bad CIDR '10.1.0.0/16x'"),
    ("    dns: {service: 172.21.0.10, endpoints: [10.1.28.194]}\n", "",
     "plan.yaml:8: clusters[1]: cluster west: the plan gives no dns"),
])
def test_plan_error_names_its_line(old: str, new: str, message: str, work: Path) -> None:
    (work / "plan.yaml").write_text(PLAN.replace(old, new))
    result = render("--plan", "plan.yaml", "--cluster", "east", "-o", "out", cwd=work)
    assert result.returncode == 1
    assert message in result.stderr, result.stderr
    assert not (work / "out").exists()


def test_a_directory_not_written_by_render_is_not_replaced(work: Path) -> None:
    mine = work / "out"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    result = render("-conf", "good.Corefile", "-o", "out", cwd=work)
    assert result.returncode == 1
    assert "was not written by interkube render: not replacing it" in result.stderr
    assert listing(mine) == {"notes.txt": "mine"}


def test_grace_period_shorter_than_the_lameduck_is_refused(work: Path) -> None:
    (work / "Corefile").write_text(".:53 {\n    health {\n        lameduck 7s\n    }\n    ready\n}\n")
    result = render("-conf", "Corefile", "--grace-period", "7", "-o", "out", cwd=work)
    assert result.returncode == 1
    assert "--grace-period 7s must exceed health's lameduck (7s at Corefile:2)" in result.stderr, result.stderr
    assert not (work / "out").exists()
    assert render("-conf", "Corefile", "--grace-period", "8", "-o", "out", cwd=work).returncode == 0

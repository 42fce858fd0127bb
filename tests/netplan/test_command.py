"""``interkube check`` and ``interkube plan`` through the real command line entry point."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from interkube.cli import main


def test_check_passing_plan_exits_zero(examples: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(examples / "000_forwarded_dns_aws.yaml")]) == 0
    out = capsys.readouterr().out
    assert "cluster1" in out and out.rstrip().endswith("0 errors, 0 warnings, 1 note: ok")


def test_check_black_hole_exits_one_with_json_and_svg(examples: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    svg = tmp_path / "plan.svg"
    assert main(["check", str(examples / "001_vip_black_hole.yaml"), "--json", "--svg", str(svg)]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [f["rule"] for f in data["findings"]] == ["R3"]
    assert ET.parse(svg).getroot().tag.endswith("svg")


def test_check_warnings_do_not_fail(examples: Path) -> None:
    assert main(["check", str(examples / "003_split_dns_replica.yaml")]) == 0


def test_malformed_plan_message_names_file_path_and_line(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    plan = tmp_path / "bad.yaml"
    plan.write_text("clusters:\n  - name: a\n  - name: b\n    pods:\n      - 10.0.0.0/8\n      - 10.1.0.0/16x\n")
    assert main(["check", str(plan)]) == 1
    err = capsys.readouterr().err
    assert f"interkube check: {plan}:6: clusters[1].pods[1]: bad CIDR '10.1.0.0/16x'" in err


def test_plan_writes_a_file_that_check_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "plan.yaml"
    assert main(["plan", "--clusters", "4", "--supernet", "172.16.0.0/12", "--nodes", "50",
                 "--ipv6", "ula", "--ipv6-from-ipv4", "--topology", "mesh", "-o", str(target)]) == 0
    text = target.read_text()
    assert text.startswith("# interkube plan --clusters 4 --supernet 172.16.0.0/12")
    assert main(["check", str(target)]) == 0
    assert "cluster4" in capsys.readouterr().out


def test_plan_to_stdout_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--clusters", "2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in data["clusters"]] == ["cluster1", "cluster2"]


def test_plan_refusal_is_an_error_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--clusters", "300"]) == 1
    assert "do not fit in 10.0.0.0/8" in capsys.readouterr().err
    assert main(["plan", "--clusters", "2", "--supernet", "10.0.0.1/8"]) == 1
    assert "--supernet" in capsys.readouterr().err
    assert main(["plan", "--clusters", "2", "--supernet", "fd00::/8"]) == 1
    assert main(["plan", "--clusters", "2", "--ipv6-from-ipv4"]) == 1
    assert "needs --ipv6" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["check"],
    ["check", "plan.yaml", "--context", "a"],
    ["check", "plan.yaml", "--write-plan", "out.yaml"],
])
def test_check_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage: interkube check" in capsys.readouterr().err


def test_check_reads_a_plan_from_standard_input() -> None:
    import subprocess
    import sys

    plan = subprocess.run([sys.executable, "-m", "interkube", "plan", "--clusters", "3"],
                          capture_output=True, text=True, check=True).stdout
    out = subprocess.run([sys.executable, "-m", "interkube", "check", "-"], input=plan,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr

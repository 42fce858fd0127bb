"""interkube.deploy.output: one YAML stream, or a kustomize directory written whole or not at all."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from interkube.deploy import output
from interkube.deploy.render import render_argv
from interkube.errors import RenderError
from testkit.kubeapi import KubeAPI

COREFILE = ".:53 {\n    health {\n        lameduck 5s\n    }\n    ready\n    forward . /etc/resolv.conf\n}\n"


def objects(*extra: str, namespace: str = "interkube", tmp: Path) -> list[dict[str, Any]]:
    path = tmp / "Corefile"
    path.write_text(COREFILE)
    return render_argv(["-conf", str(path), "--namespace", namespace, *extra])


def test_stream_reads_back_and_keeps_the_corefile_readable(tmp_path: Path) -> None:
    objs = objects(tmp=tmp_path)
    text = output.stream(objs)
    assert [d for d in yaml.safe_load_all(text)] == objs
    # The Corefile is a literal block: reviewable in a diff as the file itself.
    assert "  Corefile: |\n    .:53 {\n        health {\n" in text


def test_directory_has_one_file_per_kind_and_a_kustomization(tmp_path: Path) -> None:
    objs = objects("--expose", "internal-lb", "--cloud", "gcp", "--split-protocols", "--load-balancer-ip",
                   "10.0.0.53", tmp=tmp_path)
    dest = tmp_path / "out"
    output.write_manifests(objs, str(dest))
    kustomization = yaml.safe_load((dest / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["serviceaccount.yaml", "configmap.yaml", "deployment.yaml",
                                          "poddisruptionbudget.yaml", "service.yaml"]
    assert sorted(p.name for p in dest.iterdir()) == sorted([*kustomization["resources"], "kustomization.yaml"])
    # Both Services in the one file of their kind, in order.
    services = list(yaml.safe_load_all((dest / "service.yaml").read_text()))
    assert [s["metadata"]["name"] for s in services] == ["interkube-udp", "interkube-tcp"]
    read_back = [d for r in kustomization["resources"] for d in yaml.safe_load_all((dest / r).read_text())]
    assert sorted(map(repr, read_back)) == sorted(map(repr, objs))


def test_a_new_render_replaces_the_directory_whole(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    output.write_manifests(objects("--hpa-max", "5", tmp=tmp_path), str(dest))
    assert (dest / "horizontalpodautoscaler.yaml").exists()
    output.write_manifests(objects(tmp=tmp_path), str(dest))
    # A kind no longer rendered does not linger to be applied again.
    assert not (dest / "horizontalpodautoscaler.yaml").exists()
    assert "horizontalpodautoscaler.yaml" not in (dest / "kustomization.yaml").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Corefile", "out"]


def test_a_failure_half_way_leaves_the_previous_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "out"
    output.write_manifests(objects(tmp=tmp_path), str(dest))
    before = {p.name: p.read_text() for p in dest.iterdir()}
    written: list[Path] = []
    real = Path.write_text

    def fail_on_third(self: Path, data: str, *args: Any, **kw: Any) -> int:
        if len(written) == 2:
            raise OSError(28, "No space left on device")
        written.append(self)
        return real(self, data, *args, **kw)

    monkeypatch.setattr(Path, "write_text", fail_on_third)
    with pytest.raises(RenderError, match="No space left on device"):
        output.write_manifests(objects("--replicas", "4", tmp=tmp_path), str(dest))
    monkeypatch.undo()
    assert len(written) == 2  # it did get half way
    assert {p.name: p.read_text() for p in dest.iterdir()} == before
    # and left no temporary directory behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Corefile", "out"]


def test_refuses_a_file_or_a_directory_it_did_not_write(tmp_path: Path) -> None:
    objs = objects(tmp=tmp_path)
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(RenderError, match="was not written by interkube render"):
        output.write_manifests(objs, str(file))
    other = tmp_path / "other"
    other.mkdir()
    (other / "kustomization.yaml").write_text("resources: [mine.yaml]\n")
    with pytest.raises(RenderError, match="was not written by interkube render"):
        output.write_manifests(objs, str(other))
    assert file.read_text() == "x" and (other / "kustomization.yaml").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    output.write_manifests(objs, str(empty))
    assert (empty / "deployment.yaml").exists()


@pytest.mark.peers
@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_applies_the_directory_with_server_dry_run(tmp_path: Path, kube_api: KubeAPI, kube_ns: str) -> None:
    """What the issue asks in words: `kubectl apply --dry-run=server` of the kustomize directory."""
    dest = tmp_path / "out"
    output.write_manifests(objects("--hpa-max", "4", namespace=kube_ns, tmp=tmp_path), str(dest))
    env = {**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1", "HOME": str(tmp_path)}
    result = subprocess.run(["kubectl", "--kubeconfig", str(kube_api.kubeconfig), "apply", "-k", str(dest),
                             "--dry-run=server", "--validate=strict"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "deployment.apps/interkube created (server dry run)" in result.stdout, result.stdout
    assert "horizontalpodautoscaler.autoscaling/interkube created (server dry run)" in result.stdout

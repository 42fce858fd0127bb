"""`interkube render remote-access` against the real kube-apiserver: the objects applied in the
"remote" cluster, the token Secret filled (the token controller's work, done here by hand since no
controller-manager runs), `--kubeconfig-from` writing the kubeconfig from it, and that kubeconfig
reading exactly what a kubernetes stanza needs: interkube serves the cluster's Services with it,
while anything else (Secrets, writes) is refused."""

from __future__ import annotations

import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from lightkube import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Secret, Service

from testkit.dig import needs_dig, short
from testkit.kubeapi import KubeAPI, KubeObjects
from testkit.servers import free_port, interkube_process, process_output
from testkit.waiting import wait_until

from deploykit import fill_token_secret, one

pytestmark = [pytest.mark.peers]

NAME = "interkube-remote-reader"


def interkube(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "interkube", *args], capture_output=True, text=True, timeout=90)


@pytest.fixture
def remote_objects(kube_ns: str, apply: object) -> list[dict[str, object]]:
    """The remote-access objects, rendered by the command and applied for real."""
    result = interkube("render", "remote-access", "--namespace", kube_ns, "-o", "-")
    assert result.returncode == 0, result.stderr
    objects = [d for d in yaml.safe_load_all(result.stdout) if d]
    apply(objects)  # type: ignore[operator]
    return objects


@needs_dig
def test_kubeconfig_from_the_token_secret_reads_what_dns_needs(
        remote_objects: list[dict[str, object]], kube_api: KubeAPI, kube: KubeObjects, kube_ns: str,
        tmp_path: Path) -> None:
    fill_token_secret(kube_api, kube_ns, f"{NAME}-token", NAME)
    out = tmp_path / "west.kubeconfig"
    result = interkube("render", "remote-access", "--namespace", kube_ns, "--kubeconfig-from",
                       str(kube_api.kubeconfig), "--cluster-name", "west", "--write-kubeconfig", str(out))
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    config = yaml.safe_load(out.read_text())
    assert config["current-context"] == "west"
    assert config["clusters"][0]["cluster"]["server"] == kube_api.url

    # What the stanza reads is allowed; nothing else is.
    client = kube_api.client(out)
    try:
        kube.service(kube_ns, "web", cluster_ip="10.96.8.8")
        wait_until(lambda: [s.metadata.name for s in client.list(Service, namespace="*")
                            if s.metadata is not None and s.metadata.namespace == kube_ns] == ["web"],
                   "the Service listed with the remote-access kubeconfig", 30, ignoring=(ApiError,))
        for forbidden in (lambda: list(client.list(Secret, namespace=kube_ns)),
                          lambda: client.create(ConfigMap(metadata=ObjectMeta(name="x", namespace=kube_ns)))):
            with pytest.raises(ApiError) as err:
                forbidden()
            assert err.value.status.code == 403
    finally:
        client.close()

    # A kubernetes stanza with that kubeconfig serves the cluster.
    port = free_port()
    corefile = tmp_path / "Corefile"
    corefile.write_text(f"cluster.west:{port} {{\n    bind 127.0.0.1\n    kubernetes cluster.west {{\n"
                        f"        kubeconfig {out}\n    }}\n}}\n")
    with interkube_process(corefile, port) as proc:
        wait_until(lambda: short(port, f"web.{kube_ns}.svc.cluster.west") == ["10.96.8.8"],
                   lambda: f"web in cluster.west; the server said:\n{process_output(proc)}", 20)
        log = process_output(proc)
    assert not re.search(r"\b403\b", log), log  # as a word: a random port such as 40373 holds the digits


def test_kubeconfig_from_an_unfilled_secret_is_an_error(remote_objects: list[dict[str, object]],
                                                        kube_api: KubeAPI, kube_ns: str, tmp_path: Path) -> None:
    one(remote_objects, "Secret")  # applied, but no token controller fills it
    out = tmp_path / "west.kubeconfig"
    result = interkube("render", "remote-access", "--namespace", kube_ns, "--kubeconfig-from",
                       str(kube_api.kubeconfig), "--write-kubeconfig", str(out), "--wait", "0.5")
    assert result.returncode == 1
    assert f"Secret {kube_ns}/{NAME}-token: its token is not filled in yet" in result.stderr, result.stderr
    assert not out.exists()


def test_kubeconfig_from_a_missing_secret_says_to_apply_first(kube_api: KubeAPI, kube_ns: str,
                                                              tmp_path: Path) -> None:
    result = interkube("render", "remote-access", "--namespace", kube_ns, "--kubeconfig-from",
                       str(kube_api.kubeconfig), "--write-kubeconfig", str(tmp_path / "k"), "--wait", "0")
    assert result.returncode == 1
    assert "it does not exist: apply `interkube render remote-access" in result.stderr, result.stderr

"""Reaching the API: kubeconfig contexts, tokens, client certificates, exec plugins, in-cluster."""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from interkube.errors import KubeconfigError
from interkube.kube.access import ApiAccess, resolve
from interkube.kube.cluster import Cluster
from interkube.kube.filters import Filters
from interkube.kube.live import LiveOptions, LiveSource
from testkit.fakekube import FakeKube, service, write_kubeconfig
from testkit.waiting import until


def kubeconfig(path: Path, server: str, user: dict[str, Any], ca: Path | None = None,
               context: str = "prod") -> Path:
    cluster: dict[str, Any] = {"server": server}
    if ca is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca.read_bytes()).decode()
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": context, "context": {"cluster": "c", "user": "u"}}],
    }))
    return path




async def synced_through(options: LiveOptions, access: ApiAccess, **resolve_kwargs: Any) -> Cluster:
    """Resolve ``access``, sync a cluster through it, check it saw the fake's Service."""
    config = resolve(access, "prod", **resolve_kwargs)
    cluster = Cluster("prod", LiveSource(access, config, Filters(), options))
    await cluster.start()
    try:
        await until(lambda: cluster.synced, "a sync through these credentials")
        assert cluster.index is not None and cluster.index.service("app", "web") is not None
    finally:
        await cluster.stop()
    return cluster


def test_kubeconfig_problems_name_the_file_and_the_context(tmp_path: Path) -> None:
    missing = tmp_path / "absent"
    with pytest.raises(KubeconfigError, match=f"kubeconfig {missing}"):
        resolve(ApiAccess(kubeconfig=str(missing), context="prod"))
    path = kubeconfig(tmp_path / "kc", "https://127.0.0.1:1", {"token": "t"})
    with pytest.raises(KubeconfigError) as info:
        resolve(ApiAccess(kubeconfig=str(path), context="staging"), "east")
    message = str(info.value)
    assert f"kubeconfig {path} has no context 'staging' (it has: prod)" in message
    assert "cluster east, context staging" in message
    (tmp_path / "broken").write_text("clusters: [unterminated")
    with pytest.raises(KubeconfigError, match="is not a valid kubeconfig"):
        resolve(ApiAccess(kubeconfig=str(tmp_path / "broken")))
    no_current = yaml.safe_load(path.read_text())
    del no_current["current-context"]
    (tmp_path / "nocurrent").write_text(yaml.safe_dump(no_current))
    with pytest.raises(KubeconfigError, match="no current-context"):
        resolve(ApiAccess(kubeconfig=str(tmp_path / "nocurrent")))
    bad_user = yaml.safe_load(path.read_text())
    bad_user["contexts"][0]["context"]["user"] = "nobody"
    (tmp_path / "baduser").write_text(yaml.safe_dump(bad_user))
    with pytest.raises(KubeconfigError, match="context 'prod' names a cluster or user it does not define"):
        resolve(ApiAccess(kubeconfig=str(tmp_path / "baduser")))


def test_certificate_files_are_checked_at_setup(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "kc", "https://127.0.0.1:1",
                      {"client-certificate": "absent.crt", "client-key": "absent.key"})
    with pytest.raises(KubeconfigError, match=f"kubeconfig {path}: cannot load its credentials or certificates"):
        resolve(ApiAccess(kubeconfig=str(path)))
    with pytest.raises(KubeconfigError, match="cannot load its credentials"):
        resolve(ApiAccess(endpoint="https://127.0.0.1:1", tls=("c.crt", "c.key", "absent-ca.crt")))


def test_in_cluster_needs_the_pod_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(KubeconfigError, match="neither `kubeconfig` nor `endpoint` is given and this is not a pod"):
        resolve(ApiAccess())


async def test_client_certificates_with_endpoint_and_tls(fast: LiveOptions, tmp_path: Path) -> None:
    async with FakeKube(watch=True, tls=True, token="not-sent") as kube:
        kube.add(service("app", "web"))
        cert, key = kube.client_cert("interkube", tmp_path)
        # No token anywhere: the certificate is what lets the requests in.
        await synced_through(fast, ApiAccess(endpoint=kube.url, tls=(str(cert), str(key), str(kube.ca_cert))))


async def test_token_and_token_file_in_a_kubeconfig(fast: LiveOptions, tmp_path: Path) -> None:
    async with FakeKube(watch=True, tls=True) as kube:
        kube.add(service("app", "web"))
        written = write_kubeconfig(tmp_path / "kc", {"prod": kube})
        await synced_through(fast, ApiAccess(kubeconfig=str(written), context="prod"))
        (tmp_path / "token").write_text(kube.token)
        path = kubeconfig(tmp_path / "kc2", kube.url, {"tokenFile": str(tmp_path / "token")}, kube.ca_cert)
        await synced_through(fast, ApiAccess(kubeconfig=str(path)))


@pytest.mark.parametrize("api_version", ["client.authentication.k8s.io/v1beta1", "client.authentication.k8s.io/v1"])
async def test_exec_credential_plugins(fast: LiveOptions, api_version: str, tmp_path: Path) -> None:
    async with FakeKube(watch=True, tls=True, token="from-the-plugin") as kube:
        kube.add(service("app", "web"))
        plugin = tmp_path / "credential.py"
        credential = {"apiVersion": api_version, "kind": "ExecCredential", "status": {"token": kube.token}}
        plugin.write_text(f"import json\nprint(json.dumps({credential!r}))\n")
        path = kubeconfig(tmp_path / "kc", kube.url, {"exec": {"apiVersion": api_version, "command": sys.executable,
                                                              "args": [str(plugin)], "interactiveMode": "Never"}},
                          kube.ca_cert)
        await synced_through(fast, ApiAccess(kubeconfig=str(path)))


async def test_in_cluster_service_account(fast: LiveOptions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with FakeKube(watch=True, tls=True, token="sa-token") as kube:
        kube.add(service("app", "web"))
        account = tmp_path / "serviceaccount"
        account.mkdir()
        (account / "token").write_text(kube.token)
        (account / "namespace").write_text("kube-system")
        (account / "ca.crt").write_bytes(kube.ca_cert.read_bytes())
        # The pod's environment, pointing at the fake on loopback.
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(kube.port))
        cluster = await synced_through(fast, ApiAccess(), service_account=str(account))
        assert "(in-cluster)" in cluster.source.description


async def test_rejected_credentials_are_reported(fast: LiveOptions, tmp_path: Path) -> None:
    async with FakeKube(watch=True, token="right") as kube:
        path = write_kubeconfig(tmp_path / "kc", {"prod": kube})
        kube.token = "rotated"
        access = ApiAccess(kubeconfig=str(path), context="prod")
        cluster = Cluster("prod", LiveSource(access, resolve(access, "prod"), Filters(), fast))
        await cluster.start()
        try:
            await until(lambda: cluster.down is not None, "the refusal")
            assert "did not accept our credentials (HTTP 401) to list services" in cluster.down
        finally:
            await cluster.stop()


def test_exec_plugin_versions() -> None:
    from lightkube.config.models import UserExec
    from lightkube.core.exceptions import ConfigError

    from interkube.kube.access import ExecAuth

    v1 = ExecAuth(UserExec(apiVersion="client.authentication.k8s.io/v1", command="echo", args=["x"]))
    assert v1._prepare() == (["echo", "x"], dict(os.environ))
    assert v1._exec.apiVersion == "client.authentication.k8s.io/v1"  # left as configured
    with pytest.raises(ConfigError, match="not implemented"):
        ExecAuth(UserExec(apiVersion="client.authentication.k8s.io/v2", command="echo"))._prepare()

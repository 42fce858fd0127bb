"""Helpers for tests of rendered manifests: server-side apply (dry run or for real) of plain
manifest dicts against a kube-apiserver, ServiceAccount tokens, and running a rendered Corefile
on loopback."""

from __future__ import annotations

import base64
import functools
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from testkit.kubeapi import KubeAPI

FIELD_MANAGER = "interkube-render-tests"


@functools.cache
def _resources(api: KubeAPI, group_version: str) -> dict[str, tuple[str, bool]]:
    """kind -> (plural, namespaced) of one API group version, from discovery."""
    base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    resp = api.http().get(base)
    assert resp.status_code == 200, f"discovery of {group_version}: HTTP {resp.status_code} {resp.text[:300]}"
    return {r["kind"]: (r["name"], bool(r["namespaced"])) for r in resp.json()["resources"] if "/" not in r["name"]}


def object_path(api: KubeAPI, obj: Mapping[str, Any]) -> str:
    group_version, kind = obj["apiVersion"], obj["kind"]
    known = _resources(api, group_version)
    assert kind in known, f"{group_version} serves no kind {kind} (it serves {sorted(known)})"
    plural, namespaced = known[kind]
    base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    meta = obj["metadata"]
    if namespaced:
        return f"{base}/namespaces/{meta['namespace']}/{plural}/{meta['name']}"
    assert "namespace" not in meta, f"{kind} {meta['name']} is cluster-scoped but has a namespace"
    return f"{base}/{plural}/{meta['name']}"


def server_side_apply(api: KubeAPI, objects: Iterable[Mapping[str, Any]], *, dry_run: bool) -> list[dict[str, Any]]:
    """``kubectl apply --server-side [--dry-run=server]`` of every object, with strict field
    validation (an unknown or duplicated field is an error, not a warning); returns what the
    API server made of each. Fails the test on the first refusal, naming the object."""
    out = []
    params = {"fieldManager": FIELD_MANAGER, "fieldValidation": "Strict", "force": "true"}
    if dry_run:
        params["dryRun"] = "All"
    for obj in objects:
        resp = api.http().patch(object_path(api, obj), params=params, content=yaml.safe_dump(dict(obj)).encode(),
                                headers={"Content-Type": "application/apply-patch+yaml"})
        what = f"{obj['kind']} {obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"
        assert resp.status_code in (200, 201), f"{what}: HTTP {resp.status_code}: {resp.text[:1500]}"
        out.append(resp.json())
    return out


def service_account_token(api: KubeAPI, namespace: str, name: str, seconds: int = 3600) -> str:
    """A token for a ServiceAccount (TokenRequest), as the kubelet would project one."""
    resp = api.http().post(f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
                           json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                 "spec": {"expirationSeconds": seconds}})
    assert resp.status_code == 201, resp.text[:500]
    return str(resp.json()["status"]["token"])


def fill_token_secret(api: KubeAPI, namespace: str, secret: str, service_account: str) -> None:
    """Do the token controller's work (no controller-manager runs here): put a token for the
    ServiceAccount, the cluster's CA and the namespace into a service-account-token Secret."""
    token = service_account_token(api, namespace, service_account)
    data = {"token": token.encode(), "ca.crt": api.pki.ca_cert_pem, "namespace": namespace.encode()}
    patch = {"data": {k: base64.b64encode(v).decode() for k, v in data.items()}}
    resp = api.http().patch(f"/api/v1/namespaces/{namespace}/secrets/{secret}", json=patch,
                            headers={"Content-Type": "application/merge-patch+json"})
    assert resp.status_code == 200, resp.text[:500]


def token_kubeconfig(api: KubeAPI, path: Path, token: str, cluster: str = "test") -> Path:
    """A kubeconfig that authenticates with ``token`` (a ServiceAccount's, as a pod would)."""
    doc = {"apiVersion": "v1", "kind": "Config",
           "clusters": [{"name": cluster, "cluster": {
               "server": api.url, "certificate-authority-data": base64.b64encode(api.pki.ca_cert_pem).decode()}}],
           "users": [{"name": "sa", "user": {"token": token}}],
           "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": "sa"}}],
           "current-context": cluster}
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)
    return path

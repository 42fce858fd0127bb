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

Obj = dict[str, Any]

#: A plan of two clusters: east forwards namespace `remote` to west.
PLAN = """\
clusters:
  - name: east
    nodes: [10.0.0.0/16]
    pods: [10.0.0.0/16]
    services: [172.20.0.0/16]
    dns: {service: 172.20.0.10}
    forward: [{namespace: remote, to: west}]
  - name: west
    nodes: [10.1.0.0/16]
    pods: [10.1.0.0/16]
    services: [172.21.0.0/16]
    dns: {service: 172.21.0.10, endpoints: [10.1.28.194]}
links:
  - {kind: peering, between: [east, west], pod_traffic: true}
"""


def by_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [o for o in by_kind(objects, kind) if name is None or o["metadata"]["name"] == name]
    listed = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''} in {listed}"
    return found[0]


def container(deployment: Obj) -> Obj:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(c)


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
    if kind not in known:  # a CRD installed since the group was first looked at (the webhook's Issuer)
        _resources.cache_clear()
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


def wait_for_grant(api: KubeAPI, namespace: str, service_account: str,
                   resources: Iterable[tuple[str, str]], timeout: float = 30.0, *, scoped: bool = False) -> None:
    """Until RBAC lets the ServiceAccount list every (group, resource) (with ``scoped``: in its
    own namespace, what a Role grants): the authorizer reads roles through an informer, so a
    grant just applied is not in force at once."""
    from testkit.waiting import wait_until

    user = f"system:serviceaccount:{namespace}:{service_account}"
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"]

    def allowed(group: str, resource: str) -> bool:
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                  "spec": {"user": user, "groups": groups,
                           "resourceAttributes": {"verb": "list", "group": group, "resource": resource,
                                                  **({"namespace": namespace} if scoped else {})}}}
        resp = api.http().post("/apis/authorization.k8s.io/v1/subjectaccessreviews", json=review)
        return bool(resp.status_code == 201 and resp.json()["status"].get("allowed"))

    for group, resource in resources:
        wait_until(functools.partial(allowed, group, resource), f"RBAC grant of {resource} to {user}", timeout,
                   every=0.1)


def localize(corefile: str, *, replace: Mapping[str, str] | None = None, kubeconfig: str | None = None,
             http_ports: Mapping[str, int] | None = None) -> str:
    """A rendered Corefile made to run on this machine, as the pod would run it, with addresses
    mapped to loopback: ``bind 127.0.0.1`` in every server block, each text in ``replace``
    (cluster addresses, mounted directories) replaced, the in-cluster kubernetes stanzas (those
    without a kubeconfig) given ``kubeconfig`` (the pod's service account, as a file), and
    health, ready and prometheus moved to ``http_ports`` (by plugin name) on loopback."""
    for old, new in (replace or {}).items():
        assert old in corefile, f"{old!r} is not in the Corefile"
        corefile = corefile.replace(old, new)
    ports = http_ports or {}
    lines = corefile.splitlines()
    out = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        words = stripped.split()
        indent = line[:len(line) - len(line.lstrip())]
        if words and words[0] in ports and indent == "    ":
            # `health {`, `ready`, `prometheus :9153`: the address is the optional first argument
            rest = " {" if stripped.endswith("{") else ""
            line = f"    {words[0]} 127.0.0.1:{ports[words[0]]}{rest}"
        out.append(line)
        if line and not line[0].isspace() and line.endswith("{") and not line.startswith("("):
            out.append("    bind 127.0.0.1")
        following = lines[i + 1].split() if i + 1 < len(lines) else []
        if kubeconfig and words[:1] == ["kubernetes"] and stripped.endswith("{") and following[:1] != ["kubeconfig"]:
            out.append(f"{indent}    kubeconfig {kubeconfig}")
    return "\n".join(out) + "\n"

"""`interkube render sidecar` against the real kube-apiserver: its objects pass a server-side dry
run (strict field validation), its patch applied to a StatefulSet gives the pod template the
container on loopback, the dnsConfig (the sidecar first, the cluster DNS second, ClusterFirst's
search list) and the volumes; its Role lets the ServiceAccount read its own namespace only, and
the Corefile run with that account's token answers a ready server's public name with its pod
address and everything else through the cluster DNS (a fake upstream on loopback)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import ApiError
from lightkube.resources.core_v1 import Service

from testkit.dig import needs_dig, short
from testkit.fakeupstream import Behaviour, in_thread
from testkit.kubeapi import KubeAPI, KubeObjects
from testkit.servers import free_port, interkube_process

from deploykit import localize, one, server_side_apply, service_account_token, token_kubeconfig, wait_for_grant

pytestmark = [pytest.mark.peers]

Obj = dict[str, Any]
REGEX = r"^db-([0-9]+)\.db\.example\.com\.$"


def interkube(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "interkube", *args], capture_output=True, text=True, timeout=90)


def render(namespace: str, *extra: str, output: str = "-") -> subprocess.CompletedProcess[str]:
    return interkube("render", "sidecar", "--statefulset", "db", "--namespace", namespace, "--zone", "db.example.com",
                     "--pod", REGEX, f"db-{{1}}.db-headless.{namespace}.svc.cluster.local.",
                     "--host", "db-3.db.example.com", "10.20.0.13", *extra, "-o", output)


def rendered(namespace: str, *extra: str) -> list[Obj]:
    result = render(namespace, *extra)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def statefulset(namespace: str) -> Obj:
    labels = {"app": "db"}
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": namespace},
            "spec": {"serviceName": "db-headless", "replicas": 3, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "containers": [{"name": "db", "image": "registry.invalid/db:1"}]}}}}


def strategic_patch(api: KubeAPI, patch: Obj, *, dry_run: bool) -> Obj:
    meta = patch["metadata"]
    params = {"fieldValidation": "Strict", **({"dryRun": "All"} if dry_run else {})}
    resp = api.http().patch(f"/apis/apps/v1/namespaces/{meta['namespace']}/statefulsets/{meta['name']}",
                            params=params, content=json.dumps(patch).encode(),
                            headers={"Content-Type": "application/strategic-merge-patch+json"})
    assert resp.status_code == 200, resp.text[:1500]
    return dict(resp.json())


def test_objects_and_the_patched_pod_template(kube_api: KubeAPI, kube_ns: str) -> None:
    objects = rendered(kube_ns, "--app-container", "db")
    assert [o["kind"] for o in objects] == ["ServiceAccount", "Role", "RoleBinding", "ConfigMap", "StatefulSet"]
    resources, patch = objects[:-1], objects[-1]
    server_side_apply(kube_api, resources, dry_run=True)
    server_side_apply(kube_api, [statefulset(kube_ns)], dry_run=False)
    stored = strategic_patch(kube_api, patch, dry_run=True)
    pod = stored["spec"]["template"]["spec"]
    # Added beside the server's container (first: a strategic merge puts new items first), which
    # stays kubectl's default.
    assert [c["name"] for c in pod["containers"]] == ["splitdns", "db"]
    assert stored["spec"]["template"]["metadata"]["annotations"] == {"kubectl.kubernetes.io/default-container": "db"}
    sidecar = pod["containers"][0]
    assert sidecar["args"] == ["serve", "-conf", "/etc/interkube-splitdns/Corefile", "--loop", "asyncio"]
    assert sidecar["resources"] == {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "96Mi"}}
    assert sidecar["securityContext"]["runAsNonRoot"] is True
    assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True
    assert sidecar["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["dnsPolicy"] == "None"
    assert pod["dnsConfig"] == {"nameservers": ["127.0.0.1", "10.96.0.10"],
                                "searches": [f"{kube_ns}.svc.cluster.local", "svc.cluster.local", "cluster.local"],
                                "options": [{"name": "ndots", "value": "5"}]}
    assert pod["securityContext"]["sysctls"] == [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "53"}]
    assert pod["serviceAccountName"] == "interkube-splitdns" and pod["automountServiceAccountToken"] is True
    cm = one(resources, "ConfigMap")
    assert {v["name"]: v.get("configMap", {}).get("name") for v in pod["volumes"]}[
        "interkube-splitdns-config"] == cm["metadata"]["name"]
    corefile = cm["data"]["Corefile"]
    assert "    bind 127.0.0.1 ::1\n" in corefile and f"        namespaces {kube_ns}\n" in corefile
    assert "    forward . 10.96.0.10\n" in corefile
    # Only what the kubernetes stanza reads, in the namespace only.
    role = one(resources, "Role")
    assert role["metadata"]["namespace"] == kube_ns
    assert {(r["apiGroups"][0], res) for r in role["rules"] for res in r["resources"]} == {
        ("", "services"), ("discovery.k8s.io", "endpointslices")}
    assert all(r["verbs"] == ["list", "watch"] for r in role["rules"])


def test_an_existing_service_account_and_the_budget(kube_api: KubeAPI, kube_ns: str) -> None:
    objects = rendered(kube_ns, "--service-account", "db", "--memory-limit", "128Mi", "--cpu-limit", "200m",
                       "--cluster-dns", "fd00::a", "--ttl", "10", "--other-types", "next")
    assert [o["kind"] for o in objects] == ["Role", "RoleBinding", "ConfigMap", "StatefulSet"]
    assert one(objects, "RoleBinding")["subjects"] == [{"kind": "ServiceAccount", "name": "db", "namespace": kube_ns}]
    pod = objects[-1]["spec"]["template"]["spec"]
    assert "serviceAccountName" not in pod  # the pod keeps its own account
    assert pod["containers"][0]["resources"]["limits"] == {"memory": "128Mi", "cpu": "200m"}
    assert pod["dnsConfig"]["nameservers"] == ["127.0.0.1", "fd00::a"]
    corefile = one(objects, "ConfigMap")["data"]["Corefile"]
    assert "    forward . [fd00::a]:53\n" in corefile
    assert "        ttl 10\n        other_types next\n" in corefile
    server_side_apply(kube_api, objects[:-1], dry_run=True)


def test_a_kustomize_component(tmp_path: Path) -> None:
    out = tmp_path / "splitdns"
    result = render("shop", output=str(out))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["configmap.yaml", "kustomization.yaml", "role.yaml",
                                                      "rolebinding.yaml", "serviceaccount.yaml",
                                                      "statefulset-patch.yaml"]
    kustomization = yaml.safe_load((out / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Component"
    assert kustomization["patches"] == [{"path": "statefulset-patch.yaml",
                                         "target": {"kind": "StatefulSet", "name": "db"}}]
    assert "statefulset-patch.yaml" not in kustomization["resources"]
    # Written again in place (it is ours), and a directory that is not ours is left alone.
    assert render("shop", output=str(out)).returncode == 0
    other = tmp_path / "notes"
    other.mkdir()
    (other / "README").write_text("mine")
    result = render("shop", output=str(other))
    assert result.returncode == 1 and "was not written by interkube render" in result.stderr


@pytest.mark.parametrize(("extra", "message"), [
    (("--pod", "^db-(\\d+", "x."), "the sidecar's Corefile:"),
    (("--pod", "^db-(a)$", "db-{2}.svc.cluster.local."), "uses group {2}"),
    (("--cluster-dns", "127.0.0.1"), "--cluster-dns must be the cluster DNS Service's address"),
    (("--cluster-dns", "dns"), "--cluster-dns 'dns' is not an IP address"),
    (("--memory-limit", "lots"), "--memory-limit 'lots' is not a Kubernetes quantity"),
    (("--host", "db-9.db.example.com"), "--host db-9.db.example.com: give the name and at least one address"),
])
def test_bad_input_is_named_and_nothing_is_written(extra: tuple[str, ...], message: str) -> None:
    result = render("shop", *extra)
    assert result.returncode != 0 and message in result.stderr and not result.stdout, result.stderr


@needs_dig
def test_the_sidecar_answers_with_its_roles_grant(kube_api: KubeAPI, kube: KubeObjects, kube_ns: str,
                                                  tmp_path: Path) -> None:
    objects = rendered(kube_ns)
    server_side_apply(kube_api, objects[:-1], dry_run=False)
    account = "interkube-splitdns"
    wait_for_grant(kube_api, kube_ns, account, [("", "services"), ("discovery.k8s.io", "endpointslices")],
                   scoped=True)
    kubeconfig = token_kubeconfig(kube_api, tmp_path / "sa.kubeconfig", service_account_token(kube_api, kube_ns,
                                                                                             account))
    # Its own namespace only: nothing cluster-wide.
    sa = kube_api.client(kubeconfig)
    with pytest.raises(ApiError) as info:
        list(sa.list(Service, namespace="*"))
    assert info.value.status.code == 403
    kube.headless_service(kube_ns, "db-headless", ports=(("db", 2113, "TCP"),))
    kube.endpoint_slice(kube_ns, "db-headless-a", service="db-headless", ports=(("db", 2113, "TCP"),),
                        addresses=[{"addresses": ["10.244.7.10"], "hostname": "db-0", "conditions": {"ready": True}},
                                   {"addresses": ["10.244.7.11"], "hostname": "db-1", "conditions": {"ready": False}}])
    port = free_port()
    public = Behaviour(records={("db-1.db.example.com.", "A"): ["203.0.113.1"],
                                ("www.example.com.", "A"): ["203.0.113.80"]})
    with in_thread(public) as upstream:
        corefile = localize(one(objects, "ConfigMap")["data"]["Corefile"],
                            replace={"    bind 127.0.0.1 ::1\n": "", ".:53": f".:{port}",
                                     "10.96.0.10": upstream.address},
                            kubeconfig=str(kubeconfig))
        path = tmp_path / "Corefile"
        path.write_text(corefile)
        with interkube_process(path, port):
            assert short(port, "db-0.db.example.com") == ["10.244.7.10"]     # ready here: the pod
            assert short(port, "db-1.db.example.com") == ["203.0.113.1"]     # not ready: public
            assert short(port, "db-3.db.example.com") == ["10.20.0.13"]      # the peered replica
            assert short(port, "www.example.com") == ["203.0.113.80"]        # anything else


def test_docs_show_the_corefile_the_command_renders() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "splitdns.md").read_text()
    result = render("shop")
    assert result.returncode == 0, result.stderr
    corefile = one([d for d in yaml.safe_load_all(result.stdout) if d], "ConfigMap")["data"]["Corefile"]
    assert f"~~~ corefile\n{corefile}~~~" in doc
    assert "interkube render sidecar --statefulset db --namespace shop --zone db.example.com" in doc

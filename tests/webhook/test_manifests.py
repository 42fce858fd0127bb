"""``interkube render webhook``: the objects, their server-side dry run on the real API server,
and the rendered Deployment's arguments and Secret run as the real command."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from webhookkit import of_kind, rendered

from interkube.errors import RenderError, WebhookError
from interkube.tlsutil import certs
from interkube.webhook import mutate
from interkube.webhook.command import policy_from_args, register
from testkit.kubeapi import KubeAPI
from testkit.webhook import LOOPBACK, WebhookProcess, install_cert_manager_crds

# The dry-run helper of the render tests (tests/deploy), whose folder pytest puts on sys.path
# only while those run.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))
from deploykit import server_side_apply


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(objects, kind)
    assert len(found) == 1, [o["kind"] for o in objects]
    return found[0]


def test_the_configuration_is_explicit_about_every_choice() -> None:
    objects = rendered("--search", "cluster.all")
    assert [o["kind"] for o in objects] == ["MutatingWebhookConfiguration", "Secret", "Service", "Deployment",
                                            "PodDisruptionBudget"]
    config = one(objects, "MutatingWebhookConfiguration")
    assert "namespace" not in config["metadata"]  # cluster-scoped
    hooks = config["webhooks"]
    assert [h["name"] for h in hooks] == ["namespace.dns.interkube.io", "pod-label.dns.interkube.io"]
    for hook in hooks:
        assert hook["sideEffects"] == "None" and hook["failurePolicy"] == "Ignore"
        assert hook["matchPolicy"] == "Equivalent" and hook["reinvocationPolicy"] == "IfNeeded"
        assert hook["timeoutSeconds"] == 3 and hook["admissionReviewVersions"] == ["v1"]
        assert hook["rules"] == [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                                  "resources": ["pods"], "scope": "Namespaced"}]
        assert hook["clientConfig"]["service"] == {"namespace": "interkube", "name": "interkube-webhook",
                                                   "path": "/mutate", "port": 443}
        assert {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                "values": ["interkube", "kube-system"]} in hook["namespaceSelector"]["matchExpressions"]
        assert {"key": "app.kubernetes.io/name", "operator": "NotIn",
                "values": ["interkube"]} in hook["objectSelector"]["matchExpressions"]
    fail = one(rendered("--failure-policy", "Fail", "--timeout", "10"), "MutatingWebhookConfiguration")
    assert {(h["failurePolicy"], h["timeoutSeconds"]) for h in fail["webhooks"]} == {("Fail", 10)}


def test_the_annotation_opt_in_goes_to_the_route_that_checks_it() -> None:
    config = one(rendered("--opt-in", "annotation"), "MutatingWebhookConfiguration")
    [hook] = config["webhooks"]
    assert hook["clientConfig"]["service"]["path"] == mutate.ANNOTATED_PATH
    assert {"key": mutate.OPT_IN_KEY, "operator": "NotIn", "values": ["disabled"]} in \
        hook["objectSelector"]["matchExpressions"]


def test_the_deployment_runs_two_locked_down_replicas_with_probes() -> None:
    objects = rendered("--nameserver", "10.96.0.11", "--namespace", "dns")
    deployment = one(objects, "Deployment")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    [container] = pod["containers"]
    assert spec["replicas"] == 2
    assert pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0][
        "podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}
    assert container["image"].startswith("ghcr.io/interkube/interkube:")
    assert container["args"][0] == "webhook"
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert pod["terminationGracePeriodSeconds"] > 5  # past the webhook's lameduck
    assert one(objects, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert one(objects, "Service")["spec"]["ports"] == [{"name": "https", "port": 443, "targetPort": "https",
                                                        "protocol": "TCP"}]
    # The Deployment's pods carry the label the configuration and the server leave alone.
    assert spec["template"]["metadata"]["labels"][mutate.OWN_LABEL] == mutate.OWN_VALUE
    assert one(rendered("--anti-affinity", "required"), "Deployment")["spec"]["template"]["spec"]["affinity"][
        "podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]


def test_the_rendered_arguments_mean_the_rendered_settings() -> None:
    import argparse

    argv = ("--nameserver", "10.96.0.11", "--nameserver", "fd00:10:96::a", "--search", "cluster.all",
            "--ndots", "3", "--option", "timeout:2", "--option", "edns0", "--exclude-namespace", "batch",
            "--host-network", "--cluster-domain", "corp.local")
    [container] = one(rendered(*argv), "Deployment")["spec"]["template"]["spec"]["containers"]
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(container["args"])
    assert policy_from_args(args, "interkube") == mutate.policy(
        mutate.dns_settings(["10.96.0.11", "fd00:10:96::a"], cluster_domain="corp.local", searches=["cluster.all"],
                            ndots=3, options=["timeout:2", "edns0"]),
        own_namespace="interkube", exclude=["batch"], host_network=True)


def _served_by(secret: dict[str, Any], ca_bundle: str, process: WebhookProcess, server_name: str) -> bytes:
    """A review POSTed by hand over TLS verified as the API server would: the caBundle, the
    Service's name."""
    ctx = ssl.create_default_context(cadata=base64.b64decode(ca_bundle).decode())
    body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "r", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "namespace": "shop",
        "operation": "CREATE", "object": {"metadata": {"name": "p"}, "spec": {"containers": []}}}}).encode()
    with socket.create_connection((LOOPBACK, process.port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=server_name) as tls:
        tls.sendall(b"POST /mutate HTTP/1.1\r\nHost: " + server_name.encode() +
                    b"\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
                    str(len(body)).encode() + b"\r\n\r\n" + body)
        chunks = []
        while chunk := tls.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_the_rendered_pod_runs_with_its_secret_and_the_api_server_would_trust_it(tmp_path: Path) -> None:
    objects = rendered("--nameserver", "10.96.0.11", "--namespace", "dns", "--search", "cluster.all")
    secret = one(objects, "Secret")
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    [container] = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    ca_bundle = one(objects, "MutatingWebhookConfiguration")["webhooks"][0]["clientConfig"]["caBundle"]
    assert base64.b64decode(ca_bundle) == data["ca.crt"]
    with WebhookProcess(tmp_path, container["args"][1:], identity=(data["tls.crt"], data["tls.key"], data["ca.crt"])) \
            as process:
        reply = _served_by(secret, ca_bundle, process, "interkube-webhook.dns.svc")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    patch = json.loads(base64.b64decode(json.loads(body)["response"]["patch"]))
    assert patch[1]["value"]["nameservers"] == ["10.96.0.11"]
    assert patch[1]["value"]["searches"][-1] == "cluster.all"


def test_a_ca_dir_keeps_the_certificate_across_renders(tmp_path: Path) -> None:
    first = rendered("--ca-dir", str(tmp_path / "ca"))
    again = rendered("--ca-dir", str(tmp_path / "ca"))
    assert first == again
    fresh = rendered()
    assert one(fresh, "Secret")["data"]["ca.crt"] != one(first, "Secret")["data"]["ca.crt"]
    cert = x509.load_pem_x509_certificate(base64.b64decode(one(first, "Secret")["data"]["tls.crt"]))
    assert certs.sans(cert)[0] == ["interkube-webhook.interkube.svc", "interkube-webhook.interkube.svc.cluster.local"]


def test_a_ca_dir_certificate_that_no_longer_fits_is_issued_again_by_the_same_ca(tmp_path: Path) -> None:
    first = rendered("--ca-dir", str(tmp_path), "--namespace", "dns")
    moved = rendered("--ca-dir", str(tmp_path), "--namespace", "dns2")
    assert one(moved, "Secret")["data"]["ca.crt"] == one(first, "Secret")["data"]["ca.crt"]
    cert = x509.load_pem_x509_certificate(base64.b64decode(one(moved, "Secret")["data"]["tls.crt"]))
    assert certs.sans(cert)[0][0] == "interkube-webhook.dns2.svc"


def test_cert_manager_issues_and_injects_the_ca() -> None:
    objects = rendered("--certs", "cert-manager")
    assert [o["kind"] for o in objects] == ["MutatingWebhookConfiguration", "Issuer", "Certificate", "Issuer",
                                            "Certificate", "Service", "Deployment", "PodDisruptionBudget"]
    config = one(objects, "MutatingWebhookConfiguration")
    assert config["metadata"]["annotations"] == {"cert-manager.io/inject-ca-from": "interkube/interkube-webhook"}
    assert all("caBundle" not in h["clientConfig"] for h in config["webhooks"])
    serving = next(o for o in of_kind(objects, "Certificate") if o["metadata"]["name"] == "interkube-webhook")
    assert serving["spec"]["secretName"] == "interkube-webhook-tls"
    assert serving["spec"]["issuerRef"] == {"name": "interkube-webhook-ca", "kind": "Issuer",
                                            "group": "cert-manager.io"}
    issued_by = rendered("--certs", "cert-manager", "--issuer", "corp-ca")
    assert [o["kind"] for o in issued_by].count("Issuer") == 0
    assert one(issued_by, "Certificate")["spec"]["issuerRef"] == {"name": "corp-ca", "kind": "ClusterIssuer",
                                                                  "group": "cert-manager.io"}


@pytest.mark.peers
@pytest.mark.parametrize("mode", [("--certs", "generate"), ("--certs", "cert-manager"),
                                  ("--opt-in", "namespace,pod-label,annotation", "--failure-policy", "Fail")])
def test_every_rendered_object_passes_a_server_side_dry_run(
        mode: tuple[str, ...], kube_api: KubeAPI, namespaces: Callable[..., str]) -> None:
    install_cert_manager_crds(kube_api)
    ns = namespaces()
    objects = rendered("--namespace", ns, "--search", "cluster.all", "--host-network", *mode)
    stored = server_side_apply(kube_api, objects, dry_run=True)
    assert [o["kind"] for o in stored] == [o["kind"] for o in objects]


@pytest.mark.parametrize(("argv", "error", "words"), [
    (("--opt-in", "namespace,labels"), RenderError, "--opt-in 'namespace,labels'"),
    (("--timeout", "31"), RenderError, "1 to 30"),
    (("--issuer", "corp"), RenderError, "--issuer is for --certs cert-manager"),
    (("--certs", "cert-manager", "--ca-dir", "x"), RenderError, "--ca-dir is for --certs generate"),
    (("--name", "Bad_Name"), RenderError, "--name"),
    (("--replicas", "0"), RenderError, "at least 1"),
    (("--nameserver", "10.0.0.300"), WebhookError, "not an IP address"),
])
def test_options_that_cannot_be_rendered_are_errors(argv: tuple[str, ...], error: type[Exception],
                                                    words: str) -> None:
    with pytest.raises(error, match=words):
        rendered(*argv)


def test_the_command_writes_nothing_when_an_option_is_wrong(tmp_path: Path) -> None:
    out = tmp_path / "out"

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "interkube", "render", "webhook", *argv], capture_output=True,
                              text=True, timeout=60)

    bad = run("--nameserver", "10.96.0.10", "--opt-in", "everything", "-o", str(out))
    assert bad.returncode == 1 and bad.stderr.startswith("interkube render: --opt-in 'everything'"), bad.stderr
    assert not out.exists()
    assert run("--nameserver", "10.96.0.10", "--no-such-option", "-o", str(out)).returncode == 2
    good = run("--nameserver", "10.96.0.10", "-o", str(out))
    assert good.returncode == 0, good.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "deployment.yaml", "kustomization.yaml", "mutatingwebhookconfiguration.yaml", "poddisruptionbudget.yaml",
        "secret.yaml", "service.yaml"]

"""``interkube render webhook``: the objects that run the DNS injection webhook in a cluster.

* MutatingWebhookConfiguration: Pods at CREATE, ``sideEffects: None``, ``matchPolicy:
  Equivalent``, ``reinvocationPolicy: IfNeeded`` (a second call is a no-op), a short timeout and
  an explicit ``failurePolicy``: ``Ignore`` by default (a webhook outage creates Pods with the
  cluster's DNS rather than blocking every rollout), ``Fail`` when a Pod without interkube's
  DNS is worse than no Pod. One webhook entry per opt-in, with disjoint selectors so that a Pod
  is sent once: ``namespace`` (namespaces labelled ``interkube.io/dns-injection=enabled``),
  ``pod-label`` (Pods so labelled, elsewhere) and ``annotation`` (Pods so annotated, elsewhere;
  selectors cannot match annotations, so that entry's Pods go to ``/mutate-annotated``, which
  checks). kube-system and the webhook's own namespace are excluded by the namespaceSelector
  (so a webhook that is down never blocks its own Pods), interkube's Pods and opted-out ones by
  the objectSelector; the server checks the same again.
* Service (443 -> 8443), Deployment (2 replicas spread over nodes, non-root, read-only root
  filesystem, probes on the plain-HTTP port), PodDisruptionBudget.
* The serving certificate, either from cert-manager (a self-signed root, a CA Issuer and the
  serving Certificate, or ``--issuer``; the API server's caBundle injected by cert-manager's
  cainjector from ``cert-manager.io/inject-ca-from``), or generated here (``--certs generate``:
  a CA whose certificate is written inline as the caBundle, the key pair in a Secret; with
  ``--ca-dir`` the CA and certificate are kept there and reused, so that rendering again gives
  the same objects).
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interkube.deploy.options import DEFAULT_IMAGE
from interkube.errors import RenderError
from interkube.webhook import mutate
from interkube.webhook.command import add_pod_arguments, policy_from_args

if TYPE_CHECKING:
    from interkube.tlsutil.certs import Issued

Obj = dict[str, Any]

OPT_INS = ("namespace", "pod-label", "annotation")
CERT_SOURCES = ("generate", "cert-manager")
FAILURE_POLICIES = ("Ignore", "Fail")
#: The API server's bound on timeoutSeconds.
MAX_TIMEOUT = 30
HTTPS_PORT, HTTP_PORT, SERVICE_PORT = 8443, 8080, 443
CERT_DIR = "/etc/interkube/webhook"
#: The webhook's lameduck (its default); the grace period leaves room after it.
LAMEDUCK = 5
CERT_MANAGER = "cert-manager.io/v1"
#: Webhook entry names (fully qualified, as the API requires), per opt-in.
ENTRY_NAMES = {"namespace": "namespace.dns.interkube.io", "pod-label": "pod-label.dns.interkube.io",
               "annotation": "annotation.dns.interkube.io"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``interkube render webhook``."""
    where = parser.add_argument_group("where and how the webhook runs")
    where.add_argument("-o", "--output", required=True, metavar="DIR|-",
                       help="a kustomize directory to write (replaced whole), or - for one YAML stream")
    where.add_argument("--name", default="interkube-webhook", help="name of the objects (default %(default)s)")
    where.add_argument("--namespace", default="interkube",
                       help="namespace of the webhook, never injected itself (default %(default)s)")
    where.add_argument("--image", default=DEFAULT_IMAGE, help="container image (default %(default)s)")
    where.add_argument("--image-pull-policy", default="IfNotPresent", choices=("IfNotPresent", "Always", "Never"))
    where.add_argument("--replicas", type=int, default=2, metavar="N", help="pods (default %(default)s)")
    where.add_argument("--anti-affinity", choices=("required", "preferred"), default="preferred",
                       help="keep replicas on different nodes: always (required) or when possible (default)")
    where.add_argument("--priority-class", default="system-cluster-critical", metavar="NAME",
                       help="priorityClassName (default %(default)s; '' for none)")
    where.add_argument("--run-as-user", type=int, default=65532, metavar="UID",
                       help="the non-root user the container runs as (default %(default)s)")

    add_pod_arguments(parser.add_argument_group("what Pods get, which never change"))
    which = parser.add_argument_group("which Pods")
    which.add_argument("--opt-in", default="namespace,pod-label", metavar="LIST",
                       help=f"comma-separated, any of {', '.join(OPT_INS)}: a namespace label, a Pod label or a "
                            f"Pod annotation {mutate.OPT_IN_KEY}={mutate.ENABLED} (default %(default)s)")

    call = parser.add_argument_group("how the API server calls it")
    call.add_argument("--failure-policy", choices=FAILURE_POLICIES, default="Ignore",
                      help="when the webhook cannot answer: create the Pod unchanged (Ignore, default) or "
                           "refuse it (Fail)")
    call.add_argument("--timeout", type=int, default=3, metavar="SECONDS",
                      help=f"timeoutSeconds, 1 to {MAX_TIMEOUT} (default %(default)s)")

    tls = parser.add_argument_group("serving certificate")
    tls.add_argument("--certs", choices=CERT_SOURCES, default="generate",
                     help="generate a CA and certificate now (default), or have cert-manager issue and renew them")
    tls.add_argument("--ca-dir", metavar="DIR",
                     help="with --certs generate: keep the CA and certificate in DIR (as `interkube certs` "
                          "lays them out) and reuse them, so that rendering again changes nothing")
    tls.add_argument("--cert-days", type=int, default=365, metavar="N",
                     help="with --certs generate: the certificate's validity (default %(default)s)")
    tls.add_argument("--issuer", metavar="NAME",
                     help="with --certs cert-manager: an existing issuer (default: a self-signed CA rendered here)")
    tls.add_argument("--issuer-kind", choices=("Issuer", "ClusterIssuer"), default="ClusterIssuer",
                     help="the kind of --issuer (default %(default)s)")


_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?$")


def _label(text: str, flag: str) -> str:
    # At most 52 characters: room for the "-tls", "-ca" and "-selfsigned" suffixes within 63.
    if not _LABEL.match(text):
        raise RenderError(f"{flag} {text!r} must be a lower-case DNS label (a-z, 0-9, '-') of at most 52 characters")
    return text


def _opt_ins(text: str) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    unknown = [c for c in chosen if c not in OPT_INS]
    if unknown or not chosen:
        raise RenderError(f"--opt-in {text!r}: expected a comma-separated list of {', '.join(OPT_INS)}")
    return chosen


def render(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every object, checked first (a wrong option is a RenderError and nothing is written)."""
    name, namespace = _label(args.name, "--name"), _label(args.namespace, "--namespace")
    for ns in args.exclude_namespace:
        _label(ns, "--exclude-namespace")
    opt_ins = _opt_ins(args.opt_in)
    if args.replicas < 1:
        raise RenderError("--replicas must be at least 1")
    if not 1 <= args.timeout <= MAX_TIMEOUT:
        raise RenderError(f"--timeout must be 1 to {MAX_TIMEOUT} seconds (the API server's range)")
    if args.certs == "generate" and args.issuer:
        raise RenderError("--issuer is for --certs cert-manager")
    if args.certs == "cert-manager" and args.ca_dir:
        raise RenderError("--ca-dir is for --certs generate")
    if args.cert_days < 1:
        raise RenderError("--cert-days must be at least 1")
    policy = policy_from_args(args, namespace)
    labels = {"app.kubernetes.io/name": mutate.OWN_VALUE, "app.kubernetes.io/instance": name,
              "app.kubernetes.io/component": "webhook"}
    meta = {"name": name, "namespace": namespace,
            "labels": {**labels, "app.kubernetes.io/managed-by": "interkube-render"}}
    secret_name = f"{name}-tls"
    dns_names = [f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.{policy.dns.cluster_domain}"]

    if args.certs == "generate":
        ca_pem, leaf = _generated_certificate(args, name, dns_names)
        cert_objects = [_secret(meta, secret_name, ca_pem, leaf)]
        config = configuration(meta, policy, opt_ins, args.failure_policy, args.timeout, ca_bundle=ca_pem)
    else:
        cert_objects = _cert_manager(meta, secret_name, dns_names, args.issuer, args.issuer_kind)
        config = configuration(meta, policy, opt_ins, args.failure_policy, args.timeout,
                               inject_from=f"{namespace}/{name}")
    objects = [config, *cert_objects, service(meta, labels),
               deployment(meta, labels, policy, args, secret_name),
               {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta,
                "spec": {"maxUnavailable": 1, "selector": {"matchLabels": _selector(labels)}}}]
    # Parts are shared between objects while they are built (metadata, selector requirements);
    # a copy through JSON makes every object a tree of its own, which YAML writes without anchors.
    return [json.loads(json.dumps(obj)) for obj in objects]


def _selector(labels: dict[str, str]) -> dict[str, str]:
    return {k: labels[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}


# --- the configuration -------------------------------------------------------------------------


def _requirement(key: str, operator: str, values: list[str]) -> Obj:
    return {"key": key, "operator": operator, "values": values}


def configuration(meta: Obj, policy: mutate.Policy, opt_ins: tuple[str, ...], failure_policy: str,
                  timeout: int, *, ca_bundle: bytes | None = None, inject_from: str | None = None) -> Obj:
    """The MutatingWebhookConfiguration (cluster-scoped: no namespace in its metadata)."""
    excluded = _requirement("kubernetes.io/metadata.name", "NotIn", sorted(policy.excluded_namespaces))
    not_ours = _requirement(mutate.OWN_LABEL, "NotIn", [mutate.OWN_VALUE])
    labelled_ns = "namespace" in opt_ins
    elsewhere = [excluded] + ([_requirement(mutate.OPT_IN_KEY, "NotIn", [mutate.ENABLED])] if labelled_ns else [])
    entries: list[tuple[str, str, list[Obj], list[Obj]]] = []  # (opt-in, path, namespace, object selectors)
    if labelled_ns:
        entries.append(("namespace", mutate.MUTATE_PATH,
                        [_requirement(mutate.OPT_IN_KEY, "In", [mutate.ENABLED]), excluded],
                        [not_ours, _requirement(mutate.OPT_IN_KEY, "NotIn", [mutate.DISABLED])]))
    if "pod-label" in opt_ins:
        entries.append(("pod-label", mutate.MUTATE_PATH, elsewhere,
                        [not_ours, _requirement(mutate.OPT_IN_KEY, "In", [mutate.ENABLED])]))
    if "annotation" in opt_ins:
        # Pods labelled enabled are the pod-label entry's; the annotation is checked by the server.
        skip = [mutate.DISABLED] + ([mutate.ENABLED] if "pod-label" in opt_ins else [])
        entries.append(("annotation", mutate.ANNOTATED_PATH, elsewhere,
                        [not_ours, _requirement(mutate.OPT_IN_KEY, "NotIn", skip)]))
    webhooks = []
    for opt_in, path, namespaces, objects in entries:
        client: Obj = {"service": {"namespace": meta["namespace"], "name": meta["name"], "path": path,
                                   "port": SERVICE_PORT}}
        if ca_bundle is not None:
            client["caBundle"] = base64.b64encode(ca_bundle).decode()
        webhooks.append({
            "name": ENTRY_NAMES[opt_in],
            "admissionReviewVersions": ["v1"],
            "clientConfig": client,
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["pods"], "scope": "Namespaced"}],
            "failurePolicy": failure_policy,
            "matchPolicy": "Equivalent",
            "sideEffects": "None",
            "timeoutSeconds": timeout,
            "reinvocationPolicy": "IfNeeded",
            "namespaceSelector": {"matchExpressions": namespaces},
            "objectSelector": {"matchExpressions": objects},
        })
    metadata: Obj = {"name": meta["name"], "labels": meta["labels"]}
    if inject_from:
        metadata["annotations"] = {"cert-manager.io/inject-ca-from": inject_from}
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": metadata, "webhooks": webhooks}


# --- certificates ------------------------------------------------------------------------------


def _generated_certificate(args: argparse.Namespace, name: str, dns_names: list[str]) -> tuple[bytes, Issued]:
    from interkube.tlsutil import certs  # cryptography: only when a certificate is made

    common_name = _common_name(dns_names[0], name)
    if args.ca_dir is None:
        ca = certs.create_ca(f"{name} webhook CA")
        return ca.cert_pem(), certs.issue(ca, common_name, dns_names=dns_names, days=args.cert_days)
    layout = certs.Layout(Path(args.ca_dir))
    ca = certs.ensure_ca(layout, common_name=f"{name} webhook CA")
    files = layout.cluster(name)
    try:
        leaf = certs.ensure_leaf(ca, files.server_cert, files.server_key, common_name, dns_names=dns_names,
                                 days=args.cert_days)
    except certs.CertificateError as exc:
        # The directory is the webhook's own: a certificate that no longer fits (names changed,
        # within a tenth of its validity of the end) is issued again by the same CA, so the
        # caBundle does not change.
        print(f"interkube render: issuing {files.server_cert} again: {exc}", file=sys.stderr)
        leaf = certs.ensure_leaf(ca, files.server_cert, files.server_key, common_name, dns_names=dns_names,
                                 days=args.cert_days, force=True)
    return ca.cert_pem(), leaf


def _common_name(service_name: str, name: str) -> str:
    # X.509 caps a common name at 64 characters; clients verify the DNS names, not this.
    return service_name if len(service_name) <= 64 else name


def _secret(meta: Obj, secret_name: str, ca_pem: bytes, leaf: Issued) -> Obj:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return {"apiVersion": "v1", "kind": "Secret", "metadata": {**meta, "name": secret_name},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": b64(leaf.cert_pem()), "tls.key": b64(leaf.key_pem()), "ca.crt": b64(ca_pem)}}


def _cert_manager(meta: Obj, secret_name: str, dns_names: list[str], issuer: str | None,
                  issuer_kind: str) -> list[Obj]:
    """The serving Certificate, and unless an issuer is named, a CA of its own: a self-signed
    Issuer makes a CA Certificate that a CA Issuer signs with. The caBundle is then that CA,
    which outlives every renewal of the serving certificate (a self-signed serving certificate
    would change the caBundle at each renewal, and calls would fail until it is injected)."""
    name = meta["name"]
    out: list[Obj] = []
    if issuer is None:
        issuer, issuer_kind = f"{name}-ca", "Issuer"
        out += [
            {"apiVersion": CERT_MANAGER, "kind": "Issuer", "metadata": {**meta, "name": f"{name}-selfsigned"},
             "spec": {"selfSigned": {}}},
            {"apiVersion": CERT_MANAGER, "kind": "Certificate", "metadata": {**meta, "name": f"{name}-ca"},
             "spec": {"isCA": True, "commonName": f"{name} webhook CA", "secretName": f"{name}-ca",
                      "duration": "87600h", "privateKey": {"algorithm": "ECDSA", "size": 256},
                      "issuerRef": {"name": f"{name}-selfsigned", "kind": "Issuer", "group": "cert-manager.io"}}},
            {"apiVersion": CERT_MANAGER, "kind": "Issuer", "metadata": {**meta, "name": f"{name}-ca"},
             "spec": {"ca": {"secretName": f"{name}-ca"}}},
        ]
    out.append({"apiVersion": CERT_MANAGER, "kind": "Certificate", "metadata": meta,
                "spec": {"secretName": secret_name, "commonName": _common_name(dns_names[0], name),
                         "dnsNames": dns_names,
                         "duration": "2160h", "renewBefore": "720h", "usages": ["server auth"],
                         "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
                         "issuerRef": {"name": issuer, "kind": issuer_kind, "group": "cert-manager.io"}}})
    return out


# --- the workload ------------------------------------------------------------------------------


def service(meta: Obj, labels: dict[str, str]) -> Obj:
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {"type": "ClusterIP", "selector": _selector(labels),
                     "ports": [{"name": "https", "port": SERVICE_PORT, "targetPort": "https", "protocol": "TCP"}]}}


def webhook_args(policy: mutate.Policy, excluded: list[str], host_network: bool) -> list[str]:
    """The container's arguments (its entrypoint is ``interkube``)."""
    dns = policy.dns
    argv = ["webhook", *(a for ip in dns.nameservers for a in ("--nameserver", ip)),
            "--cluster-domain", dns.cluster_domain, *(a for s in dns.searches for a in ("--search", s))]
    for option, value in dns.options:
        if option == "ndots":
            argv += ["--ndots", str(value)]
        else:
            argv += ["--option", option if value is None else f"{option}:{value}"]
    argv += [a for ns in excluded for a in ("--exclude-namespace", ns)]
    if host_network:
        argv.append("--host-network")
    return [*argv, "--listen", f":{HTTPS_PORT}", "--http-listen", f":{HTTP_PORT}", "--tls-cert",
            f"{CERT_DIR}/tls.crt", "--tls-key", f"{CERT_DIR}/tls.key", "--lameduck", f"{LAMEDUCK}s"]


def deployment(meta: Obj, labels: dict[str, str], policy: mutate.Policy, args: argparse.Namespace,
               secret_name: str) -> Obj:
    term = {"labelSelector": {"matchLabels": _selector(labels)}, "topologyKey": "kubernetes.io/hostname"}
    affinity = ({"requiredDuringSchedulingIgnoredDuringExecution": [term]} if args.anti_affinity == "required"
                else {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": term}]})
    container: Obj = {
        "name": "webhook",
        "image": args.image,
        "imagePullPolicy": args.image_pull_policy,
        "args": webhook_args(policy, list(dict.fromkeys(args.exclude_namespace)), args.host_network),
        # The webhook's own namespace, never injected (the namespaceSelector says so too).
        "env": [{"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
        "ports": [{"name": "https", "containerPort": HTTPS_PORT, "protocol": "TCP"},
                  {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "livenessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10,
                          "timeoutSeconds": 5, "failureThreshold": 5},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5,
                           "timeoutSeconds": 2, "failureThreshold": 2},
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "tls", "mountPath": CERT_DIR, "readOnly": True},
                         {"name": "tmp", "mountPath": "/tmp"}],
    }
    pod_spec: Obj = {
        # The webhook never talks to the API server.
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": args.run_as_user, "runAsGroup": args.run_as_user,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "terminationGracePeriodSeconds": LAMEDUCK + 10,
        "affinity": {"podAntiAffinity": affinity},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                       "whenUnsatisfiable": "ScheduleAnyway",
                                       "labelSelector": {"matchLabels": _selector(labels)}}],
        "containers": [container],
        "volumes": [{"name": "tls", "secret": {"secretName": secret_name}},
                    {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}],
    }
    if args.priority_class:
        pod_spec["priorityClassName"] = args.priority_class
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": {"replicas": args.replicas, "selector": {"matchLabels": _selector(labels)},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                     "template": {"metadata": {"labels": labels}, "spec": pod_spec}}}

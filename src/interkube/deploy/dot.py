"""DNS over TLS between clusters: certificates, the client side's files, and the DoT front.

Names follow ``interkube certs`` (docs/tls.md): a cluster's DoT front presents ``dns.CLUSTER``,
which the other clusters verify; its DNS servers present ``dns-client.CLUSTER`` for mutual TLS.
Certificates come from cert-manager (a ``Certificate`` per Secret, issuer by option; a CA
issuer also fills ``ca.crt``) or from Secrets filled from ``interkube certs`` files with the
same keys (``tls.crt``, ``tls.key``, ``ca.crt``). Both are mounted as directories and re-read by
interkube when the kubelet swaps in a renewed certificate.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from interkube.deploy.options import RenderOptions
from interkube.errors import RenderError
from interkube.netplan.model import Cluster, Plan

Obj = dict[str, Any]

#: Where the DoT front's server certificate and the client certificate are mounted.
SERVER_DIR = "/etc/interkube/dot"
CLIENT_DIR = "/etc/interkube/dot-client"
DOT_PORT = 853
#: cert-manager's defaults for short-lived certificates (as docs/tls.md shows them).
DURATION, RENEW_BEFORE = "2160h", "720h"


def server_name(cluster: str) -> str:
    """The name a cluster's DoT front presents and forwarders verify."""
    return f"dns.{cluster}"


def client_name(cluster: str) -> str:
    return f"dns-client.{cluster}"


def front_name(options: RenderOptions) -> str:
    return f"{options.name}-dot"


def certificate(options: RenderOptions, name: str, common_name: str, dns_names: list[str], usage: str) -> Obj:
    """A cert-manager Certificate whose Secret has the same name."""
    assert options.issuer is not None
    return {"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": name, "namespace": options.namespace,
                         "labels": {"app.kubernetes.io/name": "interkube",
                                    "app.kubernetes.io/managed-by": "interkube-render"}},
            "spec": {"secretName": name, "commonName": common_name, "dnsNames": dns_names,
                     "duration": DURATION, "renewBefore": RENEW_BEFORE,
                     "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
                     "usages": ["digital signature", usage],
                     "issuerRef": {"group": "cert-manager.io", "kind": options.issuer_kind,
                                   "name": options.issuer}}}


def client_files(options: RenderOptions, local: Cluster) -> tuple[str, Obj, list[Obj]]:
    """(directory, volume source, certificates) of the files the forwarding side needs: the CA
    that signed the other clusters' fronts, and with --mtls the client certificate."""
    if options.issuer:
        # Always issued, even without --mtls: the Secret's ca.crt is how the CA arrives.
        name = f"{options.name}-dot-client"
        cert = certificate(options, name, client_name(local.name), [client_name(local.name)], "client auth")
        return CLIENT_DIR, {"secret": {"secretName": name}}, [cert]
    if options.mtls and not options.client_tls_secret:
        raise RenderError("--mtls with --tls-secret needs --client-tls-secret NAME: the Secret with this "
                          "cluster's client certificate (interkube certs: CLUSTER/client.crt, client.key, ca.crt)")
    secret = options.client_tls_secret or options.tls_secret
    return CLIENT_DIR, {"secret": {"secretName": secret}}, []


def client_tls_line(options: RenderOptions, directory: str) -> str:
    """forward's and merge's ``tls`` option: the client certificate with --mtls, the CA always."""
    if options.mtls:
        return f"tls {directory}/tls.crt {directory}/tls.key {directory}/ca.crt"
    return f"tls {directory}/ca.crt"


def front_corefile(options: RenderOptions, plan: Plan, local: Cluster) -> str:
    """The DoT front: ``tls://cluster.local:853`` answered from this cluster's own DNS, for the
    other clusters' networks only."""
    allowed = ["127.0.0.0/8", "::1"]
    for c in plan.clusters:
        if c.name != local.name:
            allowed += [str(r.network) for r in (*c.pods, *c.nodes)]
    allowed += list(options.allow)
    allowed = list(dict.fromkeys(allowed))
    upstream = str(local.dns.service.ip) if local.dns is not None and local.dns.service is not None \
        else "/etc/resolv.conf"
    if options.mtls:
        tls = [f"tls {SERVER_DIR}/tls.crt {SERVER_DIR}/tls.key {SERVER_DIR}/ca.crt {{",
               "    client_auth require_and_verify", "}"]
    else:
        tls = [f"tls {SERVER_DIR}/tls.crt {SERVER_DIR}/tls.key"]
    body = [*tls, "acl {", f"    allow net {' '.join(allowed)}", "    block", "}", "errors",
            "health {", f"    lameduck {options.lameduck:g}s", "}", "ready", "prometheus :9153",
            "cache 30", f"forward . {upstream}"]
    lines = [f"# The DoT front of cluster {local.name} (`interkube render --plan {options.plan} --cluster "
             f"{local.name} --tls`):",
             "# the other clusters' DNS servers ask it for this cluster's names; it asks this cluster's DNS.",
             f"tls://cluster.local:{DOT_PORT} {{", *[f"    {line}" for line in body], "}"]
    return "\n".join(lines) + "\n"


def render_front(options: RenderOptions, plan: Plan, local: Cluster) -> list[Obj]:
    """The DoT front's objects: its own ServiceAccount (no RBAC: it reads no API), certificate,
    ConfigMap, Deployment, PDB and an internal load balancer Service on port 853."""
    from interkube.deploy.render import render_corefile

    if options.cloud is None:
        raise RenderError("--tls writes this cluster's DoT front, which the other clusters reach through an "
                          "internal load balancer: give --cloud aws|gcp|azure (or --no-dot-front)")
    name = front_name(options)
    front = dataclasses.replace(options, hpa_max=None, split_protocols=False, load_balancer_ip=None,
                                cluster_ip=None, mounts=(), expose="internal-lb")
    certificates: list[Obj] = []
    if options.issuer:
        names = [server_name(local.name), f"{name}.{options.namespace}.svc",
                 f"{name}.{options.namespace}.svc.cluster.local"]
        certificates.append(certificate(options, name, server_name(local.name), names, "server auth"))
        secret = name
    else:
        assert options.tls_secret is not None
        secret = options.tls_secret
    text = front_corefile(options, plan, local)
    uses_cluster_dns = "forward . /etc/resolv.conf" in text
    return render_corefile(front, text, f"DoT front Corefile (generated from {options.plan})",
                           component="dot-front", name=name,
                           dns_policy="ClusterFirst" if uses_cluster_dns else "Default",
                           certificates=certificates,
                           extra_mounts=[(SERVER_DIR, {"secret": {"secretName": secret}})])

"""``interkube render remote-access``: read-only credentials in a remote cluster, and the
kubeconfig made from them.

For a ``kubernetes`` stanza that reads another cluster's API (``--from-api``), that cluster
needs a ServiceAccount, a long-lived token for it (a ``kubernetes.io/service-account-token``
Secret, which the remote cluster's token controller fills) and a ClusterRole that lets it list
and watch what the stanza reads, nothing more. ``render remote-access -o DIR`` writes those for
``kubectl apply`` in the remote cluster; ``render remote-access --kubeconfig-from KUBECONFIG
--write-kubeconfig FILE`` then reads the filled Secret through that cluster's API and writes the
kubeconfig the local cluster's Secret holds (``render --kubeconfig CLUSTER=FILE`` puts it there).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import time
from typing import Any

import yaml

from interkube.deploy import rbac
from interkube.errors import KubeError, RenderError
from interkube.pkg.atomicfile import write_atomically

Obj = dict[str, Any]

DEFAULT_NAME = "interkube-remote-reader"
#: How long --kubeconfig-from waits for the token controller to fill the Secret.
DEFAULT_WAIT = 30.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", metavar="DIR|-",
                   help="write the remote cluster's objects: a kustomize directory, or - for one YAML stream")
    p.add_argument("--name", default=DEFAULT_NAME, help="the ServiceAccount's name (default %(default)s)")
    p.add_argument("--namespace", default="interkube", help="its namespace in the remote cluster (default %(default)s)")
    p.add_argument("--pods", action="store_true", help="also read Pods (for a stanza with `pods verified`)")
    p.add_argument("--mcs", action="store_true",
                   help="also read ServiceExports and ServiceImports (for `clusterset ... { mcs }`)")
    p.add_argument("--no-endpoints", dest="endpoints", action="store_false",
                   help="leave EndpointSlices out (for a stanza with `noendpoints`)")
    k = p.add_argument_group("the kubeconfig, once the objects are applied")
    k.add_argument("--kubeconfig-from", metavar="KUBECONFIG",
                   help="read the token Secret through the remote cluster's API with this kubeconfig")
    k.add_argument("--context", metavar="NAME", help="the context of --kubeconfig-from (default: its current one)")
    k.add_argument("--server", metavar="URL",
                   help="the API server URL the local cluster's pods use (default: the one in --kubeconfig-from)")
    k.add_argument("--cluster-name", metavar="NAME",
                   help="the cluster and context name in the kubeconfig written (default: the context's name)")
    k.add_argument("--write-kubeconfig", metavar="FILE", help="where to write the kubeconfig (mode 0600)")
    k.add_argument("--wait", type=float, default=DEFAULT_WAIT, metavar="SECONDS",
                   help="how long to wait for the token to be filled in (default %(default)s)")


def token_secret_name(name: str) -> str:
    return f"{name}-token"


def objects(name: str, namespace: str, needs: rbac.Needs) -> list[Obj]:
    """ServiceAccount, token Secret, read-only ClusterRole and its binding."""
    labels = {"app.kubernetes.io/name": "interkube", "app.kubernetes.io/component": "remote-access",
              "app.kubernetes.io/managed-by": "interkube-render"}
    out = rbac.objects(name, namespace, labels, needs)
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
              "metadata": {"name": token_secret_name(name), "namespace": namespace, "labels": labels,
                           "annotations": {"kubernetes.io/service-account.name": name}}}
    out.insert(1, secret)
    return out


def render(args: argparse.Namespace) -> list[Obj]:
    """The objects (with -o), and/or the kubeconfig (with --write-kubeconfig)."""
    from interkube.deploy.options import check_label

    check_label("--name", args.name, 40)
    check_label("--namespace", args.namespace)
    if args.kubeconfig_from and not args.write_kubeconfig:
        raise RenderError("--kubeconfig-from needs --write-kubeconfig FILE")
    if args.write_kubeconfig and not args.kubeconfig_from:
        raise RenderError("--write-kubeconfig needs --kubeconfig-from KUBECONFIG: the remote cluster's API "
                          "to read the token from")
    if not args.output and not args.write_kubeconfig:
        raise RenderError("-o DIR|- (the objects) or --kubeconfig-from with --write-kubeconfig is required")
    if args.write_kubeconfig:
        text = kubeconfig_from(args.kubeconfig_from, args.context, name=args.name, namespace=args.namespace,
                               server=args.server, cluster_name=args.cluster_name, wait=args.wait)
        write_atomically(args.write_kubeconfig, text)
        _restrict(args.write_kubeconfig)
    if not args.output:
        return []
    return objects(args.name, args.namespace, rbac.Needs(endpoints=args.endpoints, pods=args.pods, mcs=args.mcs))


def _restrict(path: str) -> None:
    import os

    os.chmod(path, 0o600)


def kubeconfig_from(admin_kubeconfig: str, context: str | None, *, name: str, namespace: str,
                    server: str | None = None, cluster_name: str | None = None, wait: float = DEFAULT_WAIT) -> str:
    """A kubeconfig (YAML text) for the remote-access ServiceAccount, made from its token Secret
    read through ``admin_kubeconfig``; waits up to ``wait`` seconds for the token controller."""
    from interkube.kube.access import ApiAccess, resolve

    config = resolve(ApiAccess(kubeconfig=admin_kubeconfig, context=context))
    data = asyncio.run(_read_token(config, namespace, token_secret_name(name), wait))
    token = base64.b64decode(data["token"]).decode()
    ca = data.get("ca.crt")
    url = server or config.cluster.server
    cluster = cluster_name or config.context_name or "remote"
    entry: Obj = {"server": url}
    if ca:
        entry["certificate-authority-data"] = ca
    doc = {"apiVersion": "v1", "kind": "Config",
           "clusters": [{"name": cluster, "cluster": entry}],
           "users": [{"name": f"{cluster}-{name}", "user": {"token": token}}],
           "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": f"{cluster}-{name}",
                                                      "namespace": namespace}}],
           "current-context": cluster}
    return yaml.safe_dump(doc, sort_keys=False)


async def _read_token(config: Any, namespace: str, secret: str, wait: float) -> dict[str, str]:
    from interkube.kube.access import http_client
    from interkube.pkg.backoff import retry_delay

    path = f"/api/v1/namespaces/{namespace}/secrets/{secret}"
    deadline = time.monotonic() + wait
    failures = 0
    async with http_client(config, timeout=10.0) as client:
        while True:
            resp = await client.get(path)
            if resp.status_code == 200:
                data = resp.json().get("data") or {}
                if data.get("token"):
                    return {k: str(v) for k, v in data.items()}
                why = "its token is not filled in yet (the remote cluster's token controller does that)"
            elif resp.status_code == 404:
                why = f"it does not exist: apply `interkube render remote-access --namespace {namespace}` there first"
            elif resp.status_code in (401, 403):
                raise KubeError(f"cannot read Secret {namespace}/{secret}: HTTP {resp.status_code} "
                                f"({resp.text[:200].strip()})", context=config.context_name)
            else:
                why = f"HTTP {resp.status_code}"
            failures += 1
            if time.monotonic() >= deadline:
                raise KubeError(f"Secret {namespace}/{secret}: {why}", context=config.context_name)
            await asyncio.sleep(min(retry_delay(failures, first=0.2, cap=2.0), max(0.0, deadline - time.monotonic())))

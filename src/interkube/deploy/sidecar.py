"""``interkube render sidecar``: a split-DNS resolver beside each server of a StatefulSet.

The database's servers advertise public names; the sidecar answers the names of the servers
whose pods are ready in this cluster with their pod addresses (the ``splitdns`` plugin) and
forwards everything else to the cluster DNS. What is written:

* the ConfigMap with the sidecar's Corefile (splitdns, a kubernetes stanza that reads its own
  namespace only, forward to the cluster DNS), named after its hash as the server's is;
* a ServiceAccount (unless ``--service-account`` names the pod's existing one), and a Role and
  RoleBinding that let it list and watch Services and EndpointSlices in that namespace, and
  nothing else;
* a strategic-merge patch of the StatefulSet's pod template: the container, listening on
  127.0.0.1:53 and [::1]:53 with a memory and CPU budget; the pod's ``dnsConfig`` (the sidecar
  first, the cluster DNS second, ClusterFirst's search list) with ``dnsPolicy: None``; the
  sysctl that lets a non-root process bind port 53 in the pod's network namespace; the volumes.

``-o DIR`` writes a kustomize Component (the objects as resources, the patch as a patch of the
StatefulSet) for the kustomization that holds the StatefulSet; ``-o -`` one YAML stream, the
patch last (for ``kubectl patch statefulset NAME --patch-file``).
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from interkube.deploy import rbac
from interkube.deploy.options import DEFAULT_IMAGE, check_label, check_quantity
from interkube.errors import ConfigError, RenderError

Obj = dict[str, Any]

DEFAULT_NAME = "interkube-splitdns"
CONTAINER = "splitdns"
CONFIG_DIR = "/etc/interkube-splitdns"
COREFILE_KEY = "Corefile"
#: The flags after ``serve -conf FILE``: the asyncio event loop rather than uvloop, which a sidecar
#: serving one pod (a few hundred queries a second at most) has no use for, and which costs 2.1 MiB
#: of the budget (measured with bench/splitdns_sidecar.py, which runs the server with these flags).
SERVE_FLAGS = ("--loop", "asyncio")
#: The sidecar's budget. bench/splitdns_sidecar.py measures about 39 MiB RSS (peak) serving a
#: 3-server set from the API (51 MiB before lightkube, prometheus_client, trio, yaml, uvloop and
#: the other subcommands stopped loading): most of it is the interpreter with asyncio and ssl
#: (21 MiB) and the libraries (dnspython, httpx2 with h2 and anyio, msgspec), not the data. The
#: limit leaves room for a larger namespace and for the answers kept in memory.
CPU_REQUEST = "10m"
MEMORY_REQUEST = "64Mi"
MEMORY_LIMIT = "96Mi"
#: The kubernetes plugin's default TTL, as splitdns's own.
CACHE_SECONDS = 5
RUN_AS_USER = 65532


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", metavar="DIR|-",
                   help="a kustomize Component directory to write (replaced whole), or - for one YAML stream")
    p.add_argument("--statefulset", required=True, metavar="NAME", help="the StatefulSet whose pods get the sidecar")
    p.add_argument("--namespace", required=True, help="its namespace: the only one the sidecar reads")
    p.add_argument("--zone", action="append", required=True, metavar="ZONE",
                   help="the public zone(s) of the servers' names (e.g. db.example.com); repeatable")
    p.add_argument("--pod", action="append", nargs=2, default=[], metavar=("REGEX", "TEMPLATE"),
                   help="a splitdns rule: names REGEX (Go syntax) finds a match in stand for the kubernetes "
                        "name TEMPLATE ({1}, {2}: its groups); repeatable")
    p.add_argument("--host", action="append", nargs="+", default=[], metavar="NAME ADDRESS",
                   help="a fixed answer: NAME ADDRESS... (a server reached over a VPC peering); repeatable")
    p.add_argument("--ttl", type=int, default=None, metavar="SECONDS", help="the answers' TTL (default 5)")
    p.add_argument("--other-types", choices=("nodata", "next"), default=None,
                   help="other types than A/AAAA at an intercepted name (default nodata)")
    p.add_argument("--cluster-dns", default="10.96.0.10", metavar="ADDRESS",
                   help="the cluster DNS Service's address: forwarded to, and the pod's second nameserver "
                        "(default %(default)s)")
    p.add_argument("--cluster-domain", default="cluster.local", metavar="DOMAIN",
                   help="the cluster's DNS domain (default %(default)s)")
    p.add_argument("--name", default=DEFAULT_NAME,
                   help="name of the ServiceAccount, Role, RoleBinding and ConfigMap (default %(default)s)")
    p.add_argument("--app-container", metavar="NAME",
                   help="the server's own container: stays kubectl's default container (the patch puts the "
                        "sidecar first in the list)")
    p.add_argument("--service-account", metavar="NAME",
                   help="bind the Role to the pod's existing ServiceAccount instead of making one")
    p.add_argument("--image", default=DEFAULT_IMAGE, help="container image (default %(default)s)")
    p.add_argument("--image-pull-policy", default="IfNotPresent", choices=("IfNotPresent", "Always", "Never"))
    p.add_argument("--cpu", default=CPU_REQUEST, metavar="Q", help="CPU request (default %(default)s)")
    p.add_argument("--cpu-limit", default=None, metavar="Q", help="CPU limit (default none)")
    p.add_argument("--memory", default=MEMORY_REQUEST, metavar="Q", help="memory request (default %(default)s)")
    p.add_argument("--memory-limit", default=MEMORY_LIMIT, metavar="Q", help="memory limit (default %(default)s)")


# --- the Corefile ----------------------------------------------------------------------------


def _word(text: str) -> str:
    """``text`` as one Corefile token: quoted when it holds what would split or end it."""
    if text and not any(c.isspace() or c in "\"#;" for c in text) and text not in ("{", "}"):
        return text
    return '"' + text.replace('"', '\\"') + '"'


def corefile(*, namespace: str, zones: Sequence[str], pods: Sequence[Sequence[str]], hosts: Sequence[Sequence[str]],
             cluster_dns: str, cluster_domain: str = "cluster.local", ttl: int | None = None,
             other_types: str | None = None) -> str:
    """The sidecar's Corefile: checked by interkube's own parser (RenderError naming the line)."""
    rules = [f"        pod {_word(regex)} {_word(template)}" for regex, template in pods]
    rules += [f"        host {' '.join(_word(w) for w in host)}" for host in hosts]
    if ttl is not None:
        rules.append(f"        ttl {ttl}")
    if other_types is not None:
        rules.append(f"        other_types {other_types}")
    text = "\n".join([
        ".:53 {",
        "    bind 127.0.0.1 ::1",
        # Its own namespace only (what the Role grants); other names go on to the cluster DNS.
        f"    kubernetes {_word(cluster_domain)} {{",
        f"        namespaces {namespace}",
        "        fallthrough",
        "    }",
        f"    splitdns {' '.join(_word(z) for z in zones)} {{",
        *rules,
        "    }",
        f"    forward . {_forward_address(cluster_dns)}",
        f"    cache {CACHE_SECONDS}",
        "}",
        "",
    ])
    _check(text)
    return text


def _forward_address(address: str) -> str:
    return f"[{address}]:53" if ":" in address else address


def _check(text: str) -> None:
    from interkube.deploy.corefacts import read_corefile

    try:
        read_corefile(text, "the sidecar's Corefile")
    except ConfigError as exc:
        lines = text.splitlines()
        line = lines[exc.line - 1].strip() if exc.line and 0 < exc.line <= len(lines) else ""
        raise RenderError(f"{exc}" + (f" (generated line: {line})" if line else "")) from None


# --- the objects -----------------------------------------------------------------------------


def _labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "interkube", "app.kubernetes.io/component": "splitdns-sidecar",
            "app.kubernetes.io/instance": name, "app.kubernetes.io/managed-by": "interkube-render"}


def config_map_name(name: str, text: str) -> str:
    # The Corefile's hash in the name: a changed Corefile rolls the StatefulSet's pods (a new
    # pod template), never changes the file under running ones.
    return f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def container(args: argparse.Namespace, config_volume: str, tmp_volume: str) -> Obj:
    resources: Obj = {"requests": {"cpu": args.cpu, "memory": args.memory}, "limits": {"memory": args.memory_limit}}
    if args.cpu_limit:
        resources["limits"]["cpu"] = args.cpu_limit
    return {
        "name": CONTAINER,
        "image": args.image,
        "imagePullPolicy": args.image_pull_policy,
        "args": ["serve", "-conf", f"{CONFIG_DIR}/{COREFILE_KEY}", *SERVE_FLAGS],
        "resources": resources,
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS_USER, "runAsGroup": RUN_AS_USER,
                            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": config_volume, "mountPath": CONFIG_DIR, "readOnly": True},
                         {"name": tmp_volume, "mountPath": "/tmp"}],
    }


def pod_patch(args: argparse.Namespace, config_map: str, service_account: str | None) -> Obj:
    """The strategic-merge patch of the StatefulSet: what its pod template gets."""
    config_volume, tmp_volume = f"{args.name}-config"[:63], f"{args.name}-tmp"[:63]
    domain = args.cluster_domain.rstrip(".")
    spec: Obj = {
        "dnsPolicy": "None",
        "dnsConfig": {
            # The sidecar first; the cluster DNS second, for the moments the sidecar is not
            # listening (the pod starting, the sidecar restarting).
            "nameservers": ["127.0.0.1", args.cluster_dns],
            "searches": [f"{args.namespace}.svc.{domain}", f"svc.{domain}", domain],
            "options": [{"name": "ndots", "value": "5"}],
        },
        # A non-root process may bind port 53 in the pod's own network namespace (a "safe"
        # sysctl); file capabilities do not work for an interpreter.
        "securityContext": {"sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "53"}]},
        "containers": [container(args, config_volume, tmp_volume)],
        "volumes": [{"name": config_volume, "configMap": {"name": config_map,
                                                          "items": [{"key": COREFILE_KEY, "path": COREFILE_KEY}]}},
                    {"name": tmp_volume, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}],
    }
    if service_account is not None:
        spec["serviceAccountName"] = service_account
        spec["automountServiceAccountToken"] = True
    template: Obj = {"spec": spec}
    if args.app_container:
        template["metadata"] = {"annotations": {"kubectl.kubernetes.io/default-container": args.app_container}}
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": args.statefulset, "namespace": args.namespace},
            "spec": {"template": template}}


def role_objects(name: str, namespace: str, labels: dict[str, str], subject: str, *, make_account: bool) -> list[Obj]:
    """ServiceAccount (when made), Role and RoleBinding: list and watch, in ``namespace`` only,
    what the kubernetes stanza reads there (Services and EndpointSlices)."""
    meta = {"name": name, "namespace": namespace, "labels": labels}
    out: list[Obj] = []
    if make_account:
        out.append({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": dict(meta),
                    "automountServiceAccountToken": False})
    # Namespaces are cluster-wide: a Role cannot grant them (the stanza does without).
    rules = [{**rule, "resources": [r for r in rule["resources"] if r != "namespaces"]}
             for rule in rbac.rules(rbac.Needs(endpoints=True))]
    out.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": dict(meta),
                "rules": rules})
    out.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": dict(meta),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": subject, "namespace": namespace}]})
    return out


def _check_args(args: argparse.Namespace) -> None:
    check_label("--namespace", args.namespace)
    check_label("--name", args.name, 40)
    check_label("--statefulset", args.statefulset)
    for what, value in (("--service-account", args.service_account), ("--app-container", args.app_container)):
        if value is not None:
            check_label(what, value)
    for quantity, what in ((args.cpu, "--cpu"), (args.memory, "--memory"), (args.memory_limit, "--memory-limit"),
                           (args.cpu_limit, "--cpu-limit")):
        check_quantity(what, quantity)
    try:
        address = ipaddress.ip_address(args.cluster_dns)
    except ValueError:
        raise RenderError(f"--cluster-dns {args.cluster_dns!r} is not an IP address") from None
    if address.is_loopback:
        raise RenderError("--cluster-dns must be the cluster DNS Service's address, not loopback (the sidecar's)")
    if not args.pod and not args.host:
        raise RenderError("give at least one rule: --pod REGEX TEMPLATE or --host NAME ADDRESS...")
    for host in args.host:
        if len(host) < 2:
            raise RenderError(f"--host {' '.join(host)}: give the name and at least one address")


def objects(args: argparse.Namespace) -> tuple[list[Obj], Obj]:
    """(the resources, the StatefulSet patch)."""
    _check_args(args)
    text = corefile(namespace=args.namespace, zones=args.zone, pods=args.pod, hosts=args.host,
                    cluster_dns=args.cluster_dns, cluster_domain=args.cluster_domain, ttl=args.ttl,
                    other_types=args.other_types)
    labels = _labels(args.name)
    account = args.service_account or args.name
    resources = role_objects(args.name, args.namespace, labels, account, make_account=args.service_account is None)
    cm_name = config_map_name(args.name, text)
    resources.append({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": cm_name, "namespace": args.namespace, "labels": labels},
                      "data": {COREFILE_KEY: text}})
    patch = pod_patch(args, cm_name, None if args.service_account else args.name)
    return resources, patch


PATCH_FILE = "statefulset-patch.yaml"


def component_files(resources: list[Obj], patch: Obj) -> dict[str, str]:
    """A kustomize Component: the resources, and the patch of the StatefulSet it names."""
    from interkube.deploy.output import HEADER, dump, files

    out = files(resources)
    kustomization = {"apiVersion": "kustomize.config.k8s.io/v1alpha1", "kind": "Component",
                     "resources": [name for name in out if name != "kustomization.yaml"],
                     "patches": [{"path": PATCH_FILE,
                                  "target": {"kind": "StatefulSet", "name": patch["metadata"]["name"]}}]}
    out["kustomization.yaml"] = HEADER + dump(kustomization)
    out[PATCH_FILE] = dump(patch)
    return out


def render(args: argparse.Namespace) -> None:
    """Write the objects (this target writes its own output: a Component is no plain list)."""
    from interkube.deploy.output import stream, write_directory, write_text

    if not args.output:
        raise RenderError("-o DIR or -o - is required: where to write the sidecar's objects")
    resources, patch = objects(args)
    if args.output == "-":
        write_text(stream([*resources, patch]))
    else:
        write_directory(Path(args.output), component_files(resources, patch))

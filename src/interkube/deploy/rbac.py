"""RBAC derived from what the Corefile's plugins read, and nothing more.

A ``kubernetes`` (or ``kubernetai``) stanza lists and watches Services, EndpointSlices (unless
``noendpoints``) and Namespaces, plus Pods with ``pods verified`` and ServiceExports and
ServiceImports with ``multicluster``; a ``clusterset`` stanza with ``mcs`` reads the MCS objects
too (see interkube.kube.filters and interkube.kube.live). Only the stanzas that use the pod's own
service account (no ``kubeconfig``, ``endpoint`` or ``snapshot``) need a grant in this cluster; a
stanza with a kubeconfig is granted by the other cluster (``interkube render remote-access``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the plugins' modules are heavy: `render remote-access` and --help do without them
    from interkube.deploy.corefacts import CorefileFacts
    from interkube.kube.stanza import KubernetesConfig

Obj = dict[str, Any]
READ = ["list", "watch"]
MCS_GROUP = "multicluster.x-k8s.io"


@dataclass(frozen=True)
class Needs:
    """What one cluster's API must let interkube read."""

    endpoints: bool = True
    pods: bool = False
    mcs: bool = False

    def __or__(self, other: Needs) -> Needs:
        return Needs(self.endpoints or other.endpoints, self.pods or other.pods, self.mcs or other.mcs)


def in_cluster(k: KubernetesConfig) -> bool:
    """Whether a stanza reads this cluster through the pod's service account."""
    return not (k.kubeconfig or k.endpoint or k.snapshot)


def local_needs(facts: CorefileFacts) -> Needs | None:
    """What this cluster's API must grant; None when no stanza reads it (no RBAC at all)."""
    stanzas = [k for k in facts.kubernetes if in_cluster(k)]
    if not stanzas:
        return None
    return needs_of(stanzas, facts.mcs)


def needs_of(stanzas: Iterable[KubernetesConfig], mcs: bool = False) -> Needs:
    """What reading a cluster for ``stanzas`` (and clusterset's ``mcs``) takes (interkube doctor
    checks a kubeconfig's grants against it)."""
    needs = Needs(endpoints=False)
    for k in stanzas:
        # `multicluster ZONES` answers clusterset.local from ServiceImports (as CoreDNS's option).
        needs = needs | Needs(endpoints=not k.noendpoints, pods=k.pods == "verified", mcs=bool(k.multicluster))
    return needs | Needs(endpoints=False, mcs=mcs)


def rules(needs: Needs) -> list[Obj]:
    core = ["services", "namespaces"] + (["pods"] if needs.pods else [])
    out: list[Obj] = [{"apiGroups": [""], "resources": sorted(core), "verbs": list(READ)}]
    if needs.endpoints:
        out.append({"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": list(READ)})
    if needs.mcs:
        out.append({"apiGroups": [MCS_GROUP], "resources": ["serviceexports", "serviceimports"],
                    "verbs": list(READ)})
    return out


def objects(name: str, namespace: str, labels: dict[str, str], needs: Needs | None,
            role_name: str | None = None) -> list[Obj]:
    """ServiceAccount, and the ClusterRole and its binding when ``needs`` is not None.

    ClusterRoles are cluster-wide names: they are called ``NAMESPACE:NAME`` (``role_name``) so
    that two installations in two namespaces do not overwrite each other's grants."""
    meta = {"name": name, "namespace": namespace, "labels": labels}
    out: list[Obj] = [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta,
                       "automountServiceAccountToken": False}]
    if needs is None:
        return out
    role = role_name or f"{namespace}:{name}"
    cluster_meta = {"name": role, "labels": labels}
    out.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": cluster_meta,
                "rules": rules(needs)})
    out.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": dict(cluster_meta),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]})
    return out


def resources(needs: Needs) -> Iterable[tuple[str, str]]:
    """(group, resource) pairs granted: for tests and messages."""
    for rule in rules(needs):
        for resource in rule["resources"]:
            yield rule["apiGroups"][0], resource

"""Per cluster, through a kubeconfig context: the API answers, RBAC lets interkube read what its
plugins read, and what the API reports (DNS Service and endpoints, ServiceCIDRs, nodes' pod
CIDRs and addresses) is what the plan says.

RBAC is asked of the API with SelfSubjectAccessReviews for the kubeconfig's own identity, for
``list`` and ``watch`` of every resource :mod:`interkube.deploy.rbac` grants interkube for the
Corefile's kubernetes/clusterset stanzas: run the doctor with the kubeconfig interkube uses (a
``remote-access`` one, say) to check interkube's grants rather than an administrator's.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from interkube.deploy.rbac import READ, Needs, resources
from interkube.doctor.findings import Finding, fail, note, ok, warn
from interkube.errors import KubeError
from interkube.netplan.discover import DNS_NAMESPACE, DNS_SERVICE_NAMES, cluster_name, read_cluster
from interkube.netplan.model import AddressRange, Cluster, IPNetwork, Plan


@dataclass(frozen=True)
class Target:
    """A context to check (empty: the kubeconfig's current one) and the plan cluster it is
    (``CONTEXT=CLUSTER`` on the command line, a kubernetes stanza's ``cluster``, else the plan
    cluster whose ``context`` or name is the context's)."""

    context: str
    cluster: str | None = None

    @classmethod
    def parse(cls, text: str) -> Target:
        context, _, cluster = text.partition("=")
        return cls(context, cluster or None)

    def plan_cluster(self, plan: Plan | None) -> Cluster | None:
        if plan is None:
            return None
        for c in plan.clusters:
            if (self.cluster and c.name == self.cluster) or (not self.cluster and c.context == self.context):
                return c
        if self.cluster is None:
            name = cluster_name(self.context, set())
            return next((c for c in plan.clusters if c.name in (self.context, name)), None)
        return None


def dns_location(text: str | None) -> tuple[str, tuple[str, ...]]:
    """``NAMESPACE/NAME`` of the DNS Service, or discovery's defaults."""
    if not text:
        return DNS_NAMESPACE, DNS_SERVICE_NAMES
    namespace, _, name = text.partition("/")
    return (namespace, (name,)) if name else (DNS_NAMESPACE, (namespace,))


async def access_review(client: Any, verb: str, group: str, resource: str) -> tuple[bool, str]:
    from lightkube.models.authorization_v1 import ResourceAttributes, SelfSubjectAccessReviewSpec
    from lightkube.resources.authorization_v1 import SelfSubjectAccessReview

    review = SelfSubjectAccessReview(spec=SelfSubjectAccessReviewSpec(
        resourceAttributes=ResourceAttributes(verb=verb, group=group, resource=resource)))
    result = await client.create(review)
    status = result.status
    return bool(status and status.allowed), (status.reason or "") if status else ""


def _name(group: str, resource: str) -> str:
    return f"{resource}.{group}" if group else resource


async def check_rbac(client: Any, subject: str, needs: Needs) -> Finding:
    wanted = [(verb, group, resource) for group, resource in resources(needs) for verb in READ]
    answers = await asyncio.gather(*(access_review(client, *w) for w in wanted))
    missing = [f"{verb} {_name(group, resource)}" for (verb, group, resource), (allowed, _) in
               zip(wanted, answers, strict=True) if not allowed]
    granted = sorted({_name(g, r) for g, r in resources(needs)})
    if missing:
        return fail("cluster.rbac", subject, "this identity may not " + ", ".join(missing)
                    + " (the kubernetes/clusterset plugins configured need list and watch of "
                    + ", ".join(granted) + ")",
                    "grant the ClusterRole `interkube render` writes (or `interkube render remote-access` "
                    "for a remote cluster) to the identity interkube uses")
    return ok("cluster.rbac", subject, "may list and watch " + ", ".join(granted))


def _covered(network: IPNetwork, ranges: Sequence[AddressRange]) -> bool:
    return any(network.version == r.network.version and network.subnet_of(r.network)  # type: ignore[arg-type]
               for r in ranges)


def _compare_ranges(id: str, subject: str, what: str, seen: Sequence[IPNetwork],
                    planned: Sequence[AddressRange], fix: str) -> Finding:
    outside = [str(n) for n in seen if not _covered(n, planned)]
    planned_text = ", ".join(str(r) for r in planned) or "nothing"
    if outside:
        return fail(id, subject, f"the API reports {what} {', '.join(outside)}, which the plan's {planned_text} "
                    "does not hold", fix)
    return ok(id, subject, f"{what} {', '.join(str(n) for n in seen)} within the plan's {planned_text}")


def compare(found: Cluster, planned: Cluster | None, subject: str, dns_where: str) -> list[Finding]:
    """What the API reported against the plan's cluster."""
    out: list[Finding] = []
    dns = found.dns
    if dns is None or dns.service is None:
        out.append(fail("cluster.dns-service", subject, f"no DNS Service found at {dns_where}",
                        "name the cluster DNS Service with --dns-service NAMESPACE/NAME"))
    elif planned is None or planned.dns is None or planned.dns.service is None:
        out.append(ok("cluster.dns-service", subject, f"DNS Service {dns.service} at {dns_where} (the plan "
                      "names none)"))
    elif planned.dns.service.ip != dns.service.ip:
        out.append(fail("cluster.dns-service", subject,
                        f"the DNS Service at {dns_where} is {dns.service}, the plan says {planned.dns.service}",
                        "correct the plan's dns.service (clients and forwards use that address)"))
    else:
        out.append(ok("cluster.dns-service", subject, f"DNS Service {dns.service} at {dns_where}, as planned"))
    if dns is not None:
        ready = {e.ip for e in dns.endpoints}
        planned_eps = {e.ip for e in planned.dns.endpoints} if planned is not None and planned.dns else set()
        shown = ", ".join(str(e) for e in dns.endpoints) or "none"
        if not ready:
            out.append(fail("cluster.dns-endpoints", subject, f"the DNS Service at {dns_where} has no ready endpoint",
                            "start the cluster DNS pods (kubectl -n kube-system get pods,endpointslices)"))
        elif planned_eps - ready:
            gone = ", ".join(str(ip) for ip in sorted(planned_eps - ready, key=int))
            out.append(fail("cluster.dns-endpoints", subject,
                            f"the plan's DNS endpoints {gone} are not ready endpoints of the DNS Service ({shown})",
                            "update the plan and the forwards that point at them (pod addresses change when "
                            "the DNS pods are replaced)"))
        else:
            out.append(ok("cluster.dns-endpoints", subject, f"ready endpoints {shown}"))
    if planned is None:
        out.append(note("cluster.plan", subject, "no plan cluster for this context: ranges not compared",
                        "give --plan, and name the context in the plan's `context` (or --context CONTEXT=CLUSTER)"))
        return out
    fix = "update the plan (interkube check --context ... --write-plan shows what the API reports)"
    if "services" in found.inferred:
        out.append(note("cluster.service-cidr", subject, "no ServiceCIDR objects readable: inferred "
                        f"{', '.join(str(r) for r in found.services)} from ClusterIPs"))
    else:
        out.append(_compare_ranges("cluster.service-cidr", subject, "ServiceCIDRs",
                                   [r.network for r in found.services], planned.services, fix))
    if dns is not None and dns.service is not None and not _covered(
            ipaddress.ip_network(dns.service.ip), planned.services):
        out.append(fail("cluster.service-cidr", subject,
                        f"the DNS Service IP {dns.service} lies outside the plan's Service ranges", fix))
    if "pods" in found.inferred or not found.pods:
        out.append(note("cluster.pod-cidr", subject, "nodes report no podCIDRs: pod ranges not compared"))
    else:
        out.append(_compare_ranges("cluster.pod-cidr", subject, "node podCIDRs",
                                   [r.network for r in found.pods], planned.pods, fix))
    if found.nodes:
        out.append(_compare_ranges("cluster.nodes", subject, "node addresses",
                                   [r.network for r in found.nodes], planned.nodes, fix))
    return out


async def check_context(config: Any, target: Target, plan: Plan | None, needs: Needs,
                        dns_service: str | None, timeout: float, subject: str) -> list[Finding]:
    import httpx2
    from lightkube import ApiError, AsyncClient

    server = config.cluster.server
    client = AsyncClient(config, trust_env=False, timeout=httpx2.Timeout(timeout))
    try:
        try:
            rbac = await check_rbac(client, subject, needs)
        except (httpx2.HTTPError, OSError) as exc:
            return [fail("cluster.api", subject, f"the API at {server} does not answer: {type(exc).__name__}: {exc}",
                         "check the kubeconfig's server address and the network path to it")]
        except ApiError as exc:
            return [fail("cluster.api", subject, f"the API at {server} refused a SelfSubjectAccessReview: "
                         f"HTTP {exc.status.code} {exc.status.message or ''}".rstrip(),
                         "check the kubeconfig's credentials")]
        out = [ok("cluster.api", subject, f"the API at {server} answers"), rbac]
        namespace, names = dns_location(dns_service)
        where = f"{namespace}/{'|'.join(names)}"
        try:
            found = await read_cluster(client, target.cluster or target.context, target.context,
                                       dns_service=(namespace, names))
        except KubeError as exc:
            out.append(warn("cluster.read", subject, f"cannot read the cluster's ranges: {exc}",
                            "give the doctor a kubeconfig that may list nodes, servicecidrs, services and "
                            "endpointslices"))
            return out
        return out + compare(found, target.plan_cluster(plan), subject, where)
    finally:
        await client.close()


async def check_clusters(kubeconfig: str, targets: Sequence[Target], plan: Plan | None, needs: Needs,
                         dns_service: str | None, timeout: float) -> list[Finding]:
    from lightkube.config.kubeconfig import KubeConfig
    from lightkube.core.exceptions import ConfigError

    try:
        config = KubeConfig.from_file(kubeconfig)
    except (ConfigError, OSError, ValueError, KeyError, TypeError) as exc:
        return [fail("cluster.kubeconfig", kubeconfig, f"cannot use the kubeconfig: {exc}",
                     "give a readable kubeconfig with --kubeconfig")]
    out: list[Finding] = []
    for target in targets:
        subject = f"context {target.context}" if target.context else f"the current context of {kubeconfig}"
        try:
            single = config.get(target.context or None)
        except (ConfigError, KeyError, ValueError) as exc:
            out.append(fail("cluster.kubeconfig", subject, f"not usable in {kubeconfig}: {exc}",
                            "name a context of the kubeconfig (kubectl config get-contexts)"))
            continue
        out += await check_context(single, target, plan, needs, dns_service, timeout, subject)
    return out

"""Which checks run for the options given, in the order they print."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from interkube.doctor.findings import Finding, fail

if TYPE_CHECKING:
    from interkube.doctor.corefile import Corefile
    from interkube.netplan.model import Plan


@dataclass(frozen=True)
class Options:
    """The command's options (docs/doctor.md); tests build them directly."""

    corefile: str | None = None
    dns_port: int | None = None
    plan: str | None = None
    kubeconfig: str | None = None
    contexts: tuple[str, ...] = ()
    dns_service: str | None = None
    webhook: str | None = None
    ready: tuple[str, ...] = ()
    proxy: str | None = None
    proxy_netns: str | None = None
    probe: str | None = None
    probe_pod: str | None = None
    lab_state: str | None = None
    probe_cluster: str | None = None
    probe_dns: str | None = None
    probe_srv: tuple[str, ...] = ()
    probe_connect: tuple[str, ...] = ()
    timeout: float = 2.0


def default_kubeconfig() -> str:
    return os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or str(Path.home() / ".kube" / "config")


async def run_checks(options: Options) -> list[Finding]:
    """Every check the options ask for; a check that cannot run says so as a finding."""
    from interkube.deploy.rbac import Needs, needs_of
    from interkube.errors import PlanError

    found: list[Finding] = []
    if options.probe_pod:
        options, failed = from_lab(options)
        if failed is not None:
            return [failed]
    plan = None
    if options.plan:
        from interkube.doctor.plan import check_plan
        from interkube.netplan.parse import load_plan

        try:
            plan = load_plan(options.plan)
        except PlanError as exc:
            found.append(fail("plan.parse", options.plan, f"does not parse: {exc}", "correct the line named"))
        else:
            found += check_plan(plan)

    model = None
    if options.corefile:
        from interkube.doctor import corefile, upstreams

        model, parsed = corefile.load(options.corefile, options.dns_port)
        found += parsed
        if model is not None:
            found += corefile.check_open_resolver(model)
            found += corefile.check_self_loops(model)
            found += await upstreams.check_forwarded_zones(model, options.timeout)

    # --kubeconfig alone: its current context.
    contexts = options.contexts or (("",) if options.kubeconfig else ())
    if not contexts and model is not None:
        found += await _stanza_clusters(model, plan, options)
    if contexts:
        from interkube.doctor.cluster import Target, check_clusters

        needs = needs_of(model.kubernetes, model.mcs) if model is not None and model.kubernetes else Needs()
        targets = [Target.parse(c) for c in contexts]
        found += await check_clusters(options.kubeconfig or default_kubeconfig(), targets, plan, needs,
                                      options.dns_service, options.timeout)
        from interkube.doctor.components import check_webhooks

        found += await check_webhooks(options.kubeconfig or default_kubeconfig(), targets, options.webhook,
                                      options.timeout)

    from interkube.doctor.components import check_proxy, check_ready

    found += await check_ready(model, options.ready, options.timeout)
    proxied = plan is not None and any(link.service_proxy for link in plan.links)
    if options.proxy or options.proxy_netns or options.probe or proxied:
        found += await check_proxy(options.proxy, options.proxy_netns or options.probe, options.timeout)
    if options.probe:
        from interkube.doctor.probe import run_probe

        found += await run_probe(options, plan, model)
    return found


def from_lab(options: Options) -> tuple[Options, Finding | None]:
    """``--probe-pod CLUSTER/POD``: the pod's namespace, its cluster, that cluster's DNS Service,
    the lab's plan and, where the cluster's router runs ``interkube proxy``, its endpoint and
    namespace, from the state of ``interkube lab up`` (docs/lab.md)."""
    import dataclasses

    from interkube.errors import InterkubeError
    from interkube.lab.build import DEFAULT_STATE, Lab

    cluster, _, pod = (options.probe_pod or "").partition("/")
    subject = f"lab pod {options.probe_pod}"
    if not cluster or not pod:
        return options, fail("probe", subject, "--probe-pod takes CLUSTER/POD", "name a pod as `lab status` lists it")
    try:
        lab = Lab.load(options.lab_state or DEFAULT_STATE)
        netns = str(lab.netns(cluster, pod))
    except InterkubeError as exc:
        return options, fail("probe", subject, str(exc), "start the lab (interkube lab up PLAN) or give --lab-state")
    dns = proxy = proxy_netns = None
    if cluster in lab.layout.clusters:  # else an external network's host: no cluster DNS of its own
        dns = ([str(a) for a in lab.cluster(cluster).dns_service] or [str(lab.dns_address(cluster))])[0]
        proxied = lab.state.get("proxies", {}).get(cluster)
        if proxied:  # the cluster's router runs interkube proxy for the other clusters' VIPs
            proxy, proxy_netns = f"http://{proxied['http']}", lab.netns(cluster, "router")
    else:
        cluster = ""
    return dataclasses.replace(options, probe=netns, probe_cluster=options.probe_cluster or cluster or None,
                               probe_dns=options.probe_dns or dns, plan=options.plan or str(lab.plan_path),
                               proxy=options.proxy or proxy, proxy_netns=options.proxy_netns or proxy_netns), None


async def _stanza_clusters(model: Corefile, plan: Plan | None, options: Options) -> list[Finding]:
    """Without --context, the clusters the Corefile's kubernetes stanzas read through a
    kubeconfig, each checked for what that stanza needs."""
    from interkube.deploy.rbac import needs_of
    from interkube.doctor.cluster import Target, check_clusters

    out: list[Finding] = []
    for stanza in model.kubernetes:
        if stanza.kubeconfig:
            target = Target(stanza.context or "", stanza.cluster)
            out += await check_clusters(stanza.kubeconfig, [target], plan, needs_of([stanza], model.mcs),
                                        options.dns_service, options.timeout)
    return out

"""A Corefile for one cluster of an address plan, and the objects around it.

From a plan (docs/netplan.md) and the cluster the manifests are for (L), the generated
Corefile serves:

* ``cluster.local`` and ``cluster.L`` from L's own API (the *kubernetes* plugin, in-cluster);
* each namespace the plan says L forwards (``forward: [{namespace: NS, to: O}]``):
  ``NS.svc.cluster.local`` forwarded to O's DNS (the scenario "Forwarded DNS between clusters");
* ``cluster.O`` for every other cluster O: O's DNS asked for ``cluster.local`` and the answer
  renamed (a *merge* of one cluster), or, with ``--from-api O``, O's API read through a
  kubeconfig Secret (``render remote-access`` makes the credentials);
* ``cluster.all``, when the plan has more than one cluster: every cluster merged (*merge*,
  local first);
* everything else forwarded to L's cluster DNS (the plan's ``dns.service``) or the node's
  resolver;

all of it only for the clients ``acl`` lets in (L's pods and nodes by default). With ``--tls``
the other clusters are asked over DNS over TLS at their DoT fronts, and L's own DoT front is
written as well: a second small Deployment that answers ``tls://cluster.local:853`` for the
other clusters from L's DNS, behind an internal load balancer.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from interkube.deploy import dot
from interkube.deploy.options import RenderOptions
from interkube.deploy.render import render_corefile
from interkube.errors import PlanError, RenderError
from interkube.netplan.model import Cluster, Plan
from interkube.upstream.address import parse_upstream

Obj = dict[str, Any]

#: Where a kubeconfig Secret of an API-served cluster is mounted (one directory per cluster).
REMOTE_DIR = "/etc/interkube/remote"
#: The port of health, ready and prometheus in generated Corefiles (CoreDNS's defaults).
HEALTH_PORT, READY_PORT, METRICS_PORT = 8080, 8181, 9153
#: The cache in front of every generated zone (CoreDNS's usual `cache 30`).
CACHE_SECONDS = 30


@dataclass
class Remote:
    """How L reaches another cluster O."""

    cluster: Cluster
    from_api: bool
    address: str | None          # its DNS (or DoT front), as forward and merge write it


@dataclass
class Generated:
    corefile: str
    mounts: list[tuple[str, Obj]] = field(default_factory=list)   # (directory, volume source)
    certificates: list[Obj] = field(default_factory=list)


def render_plan(options: RenderOptions) -> list[Obj]:
    """Everything ``interkube render --plan PLAN --cluster L`` writes."""
    from interkube.netplan.parse import load_plan

    assert options.plan is not None and options.cluster is not None
    plan = load_plan(options.plan)
    local = find_cluster(plan, options.cluster)
    remotes = remotes_of(plan, local, options)
    gen = generate(plan, local, remotes, options)
    out = render_corefile(options, gen.corefile, f"Corefile (generated from {options.plan})",
                          certificates=gen.certificates, extra_mounts=gen.mounts)
    if options.tls and options.dot_front:
        out += dot.render_front(options, plan, local)
    return out


def find_cluster(plan: Plan, name: str) -> Cluster:
    try:
        return plan.cluster(name)
    except KeyError:
        known = ", ".join(c.name for c in plan.clusters) or "none"
        raise PlanError(f"no cluster named {name!r} in the plan (clusters: {known})", plan.source) from None


def _where(plan: Plan, cluster: Cluster) -> tuple[str | None, int | None, str]:
    return plan.source, cluster.origin.line, cluster.origin.path


def remotes_of(plan: Plan, local: Cluster, options: RenderOptions) -> list[Remote]:
    """Every other cluster of the plan and how L reaches it; PlanError at the cluster's line
    when its DNS address is needed and the plan does not give one."""
    names = {c.name for c in plan.clusters}
    from_api = set(options.from_api)
    if "all" in from_api:
        from_api = (from_api - {"all"}) | (names - {local.name})
    overrides = dict(options.remote_dns)
    for name in (from_api | set(overrides)) - names:
        raise PlanError(f"no cluster named {name!r} in the plan (from --from-api/--remote-dns; clusters: "
                        f"{', '.join(sorted(names))})", plan.source)
    if local.name in from_api | set(overrides):
        raise RenderError(f"--from-api/--remote-dns name {local.name}, the cluster being rendered: "
                          "it is served from its own API")
    forwarded_to = {f.to for f in local.forward}
    out = []
    for c in plan.clusters:
        if c.name == local.name:
            continue
        api = c.name in from_api
        address = _address(plan, c, overrides.get(c.name), options, needed=not api or c.name in forwarded_to)
        out.append(Remote(c, api, address))
    return out


def _address(plan: Plan, c: Cluster, override: str | None, options: RenderOptions, *, needed: bool) -> str | None:
    file, line, path = _where(plan, c)
    if override is not None:
        try:
            parse_upstream(override, ("dns",))
        except ValueError as exc:
            raise RenderError(f"--remote-dns {c.name}={override}: {exc}") from None
        return override
    if not needed:
        return None
    if options.tls:
        raise PlanError(f"cluster {c.name}: with --tls, give the address of its DoT front (its internal load "
                        f"balancer): --remote-dns {c.name}=ADDRESS", file, line, path)
    dns = c.dns
    if dns is not None and dns.endpoints:
        return " ".join(_host(a.ip) for a in dns.endpoints)
    if dns is not None and dns.service is not None:
        return _host(dns.service.ip)
    raise PlanError(f"cluster {c.name}: the plan gives no dns (service or endpoints) to forward to; add it, "
                    f"give --remote-dns {c.name}=ADDRESS, or read it from its API with --from-api {c.name}",
                    file, line, path)


def _host(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return str(ip)


def _allowed(plan: Plan, local: Cluster, options: RenderOptions) -> list[str]:
    nets = ["127.0.0.0/8", "::1"]
    nets += [str(r.network) for r in (*local.pods, *local.nodes)]
    nets += list(options.allow)
    for text in options.allow:
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError as exc:
            raise RenderError(f"--allow {text}: {exc}") from None
    return list(dict.fromkeys(nets))


def _upstreams(address: str, options: RenderOptions) -> str:
    if not options.tls:
        return address
    return " ".join(f"tls://{a}" for a in address.split())


def generate(plan: Plan, local: Cluster, remotes: list[Remote], options: RenderOptions) -> Generated:
    gen = Generated("")
    port = options.dns_port
    lines: list[str] = [
        f"# Generated by `interkube render --plan {options.plan} --cluster {local.name}`: regenerate it,",
        "# do not edit it (docs/deploy.md).",
        "",
        "# Only this cluster's pods and nodes (and --allow) may ask: never an open resolver.",
        "(clients) {",
        "    acl {",
        f"        allow net {' '.join(_allowed(plan, local, options))}",
        "        block",
        "    }",
        "}",
        "",
    ]
    client_tls = ""
    if options.tls:
        directory, source, certificates = dot.client_files(options, local)
        gen.mounts.append((directory, source))
        gen.certificates += certificates
        client_tls = dot.client_tls_line(options, directory)

    def block(keys: str, body: list[str], comment: str) -> None:
        lines.append(f"# {comment}")
        lines.append(f"{' '.join(f'{k}:{port}' for k in keys.split())} {{")
        lines.extend(f"    {line}" for line in ["import clients", "errors", f"cache {CACHE_SECONDS}", *body])
        lines.append("}")
        lines.append("")

    block(f"cluster.local cluster.{local.name}",
          ["loadbalance", f"kubernetes cluster.local cluster.{local.name} {{", f"    cluster {local.name}", "}"],
          f"This cluster ({local.name}), from its own API.")
    by_name = {r.cluster.name: r for r in remotes}
    for fwd in local.forward:
        remote = by_name.get(fwd.to)
        if remote is None or remote.address is None:
            raise PlanError(f"forward of namespace {fwd.namespace} to {fwd.to}: no DNS address for {fwd.to}",
                            plan.source, fwd.origin.line, fwd.origin.path)
        block(f"{fwd.namespace}.svc.cluster.local",
              _forward(remote, options, client_tls),
              f"Namespace {fwd.namespace} of cluster {fwd.to} (the plan's forward), from its DNS.")
    for r in remotes:
        name = r.cluster.name
        if r.from_api:
            # render_corefile mounts its Secret where this path points (as for any kubeconfig stanza).
            path = f"{REMOTE_DIR}/{name}/kubeconfig"
            body = [f"kubernetes cluster.{name} {{", f"    kubeconfig {path}", f"    cluster {name}", "}"]
            block(f"cluster.{name}", body, f"Cluster {name}, from its API (credentials: render remote-access).")
        else:
            assert r.address is not None
            body = [f"merge cluster.{name} {{",
                    *[f"    cluster {name} {u} cluster.local" for u in _upstreams(r.address, options).split()[:1]],
                    *_merge_tls(options, client_tls, name), "}"]
            block(f"cluster.{name}", body, f"Cluster {name}, from its DNS (its cluster.local renamed).")
    if len(plan.clusters) > 1:
        self_addr = f"127.0.0.1:{port}"
        members = [f"    cluster {local.name} {self_addr} cluster.{local.name}"]
        for r in remotes:
            if r.from_api or r.address is None:
                members.append(f"    cluster {r.cluster.name} {self_addr} cluster.{r.cluster.name}")
            else:
                first = _upstreams(r.address, options).split()[0]
                tail = f"%{dot.server_name(r.cluster.name)}" if options.tls else ""
                members.append(f"    cluster {r.cluster.name} {first}{tail} cluster.local")
        tls_line = [f"    {client_tls}"] if options.tls else []
        block("cluster.all", ["merge cluster.all {", *members, f"    local {local.name}", *tls_line, "}"],
              "Every cluster of the plan, merged: this cluster's answer first.")
    upstream = _host(local.dns.service.ip) if local.dns is not None and local.dns.service is not None \
        else "/etc/resolv.conf"
    block(".", ["health {", f"    lameduck {options.lameduck:g}s", "}", "ready", f"prometheus :{METRICS_PORT}",
                "loop", f"forward . {upstream}"],
          "Everything else: this cluster's DNS (or the node's resolver).")
    gen.corefile = "\n".join(lines).rstrip("\n") + "\n"
    return gen


def _forward(remote: Remote, options: RenderOptions, client_tls: str) -> list[str]:
    assert remote.address is not None
    ups = _upstreams(remote.address, options)
    if not options.tls:
        return [f"forward . {ups}"]
    return [f"forward . {ups} {{", f"    {client_tls}", f"    tls_servername {dot.server_name(remote.cluster.name)}",
            "}"]


def _merge_tls(options: RenderOptions, client_tls: str, name: str) -> list[str]:
    if not options.tls:
        return []
    return [f"    {client_tls}", f"    tls_servername {dot.server_name(name)}"]

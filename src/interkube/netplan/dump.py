"""A :class:`~interkube.netplan.model.Plan` back to the plan file format (YAML or JSON).

The output of :func:`plan_to_dict` read by :func:`interkube.netplan.parse.parse_plan` gives the
same plan again (but for the origins, which name the new file's lines).
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from interkube.netplan.model import Cluster, ExternalNetwork, Link, LinkKind, Networking, Plan

_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """The plan as plain lists and dicts, with defaults left out so the file stays short."""
    doc: dict[str, Any] = {"version": 1, "clusters": [_cluster(c) for c in plan.clusters]}
    if plan.external:
        doc["external"] = [_external(e) for e in plan.external]
    if plan.links:
        doc["links"] = [_link(link) for link in plan.links]
    return doc


def dump_plan(plan: Plan, header: str | None = None, as_json: bool = False) -> str:
    """Plan file text; ``header`` lines become leading ``#`` comments (YAML only)."""
    doc = plan_to_dict(plan)
    if as_json:
        return json.dumps(doc, indent=2) + "\n"
    body = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=None, width=100)
    if not header:
        return body
    comments = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    return comments + body


def _cluster(cluster: Cluster) -> dict[str, Any]:
    out: dict[str, Any] = {"name": cluster.name}
    if cluster.context is not None:
        out["context"] = cluster.context
    if cluster.networking is not Networking.ROUTED or "networking" in cluster.inferred:
        out["networking"] = cluster.networking.value
    for role, ranges in (("nodes", cluster.nodes), ("pods", cluster.pods), ("services", cluster.services)):
        if ranges:
            out[role] = [str(r.network) for r in ranges]
    prefix = {family: value for family, value in (("ipv4", cluster.per_node_prefix.ipv4),
                                                  ("ipv6", cluster.per_node_prefix.ipv6))
              if value is not None}
    if prefix:
        out["per_node_prefix"] = prefix
    if cluster.dns is not None:
        dns: dict[str, Any] = {}
        if cluster.dns.service is not None:
            dns["service"] = str(cluster.dns.service.ip)
        if cluster.dns.endpoints:
            dns["endpoints"] = [str(e.ip) for e in cluster.dns.endpoints]
        out["dns"] = dns
    if cluster.namespaces:
        out["namespaces"] = list(cluster.namespaces)
    if cluster.forward:
        out["forward"] = [{"namespace": f.namespace, "to": f.to} for f in cluster.forward]
    if cluster.inferred:
        out["inferred"] = list(cluster.inferred)
    return out


def _external(network: ExternalNetwork) -> dict[str, Any]:
    return {"name": network.name, "kind": network.kind, "cidrs": [str(r.network) for r in network.cidrs]}


def _link(link: Link) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if link.name is not None:
        out["name"] = link.name
    if link.kind is not LinkKind.PEERING:
        out["kind"] = link.kind.value
    out["between"] = list(link.between)
    for key, value in (("nat", link.nat), ("pod_traffic", link.pod_traffic),
                       ("service_proxy", link.service_proxy)):
        if value:
            out[key] = True
    return out

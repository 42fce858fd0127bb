"""The objects that run a Corefile highly available: ConfigMap, Deployment, PodDisruptionBudget,
HorizontalPodAutoscaler and Service(s).

Kubernetes is the engine for availability (replicas, anti-affinity, spread over zones, a
disruption budget, an autoscaler); these functions only fill it in from the Corefile's facts:
the ports to expose, the probes on ``health``'s ``/health`` and ``ready``'s ``/ready``, and a
grace period longer than ``health``'s lameduck, so that a pod being replaced keeps answering
while the Service stops sending to it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from interkube.deploy.corefacts import CorefileFacts
from interkube.deploy.options import Mount, RenderError, RenderOptions

#: Seconds on top of the lameduck for the rest of the shutdown (closing sockets, flushing logs).
GRACE_MARGIN = 10
#: The container's entrypoint is `interkube`; these are its arguments.
CONFIG_DIR = "/etc/interkube"
COREFILE_KEY = "Corefile"
SERVE_ARGS = ["serve", "-conf", f"{CONFIG_DIR}/{COREFILE_KEY}"]

Obj = dict[str, Any]


@dataclass
class Workload:
    """One Deployment's worth of objects, before they are turned into manifests."""

    options: RenderOptions
    name: str                     # of the Deployment, ConfigMap, Service, ...
    component: str                # app.kubernetes.io/component
    corefile: str
    facts: CorefileFacts
    service_account: str
    dns_policy: str = "Default"   # the server resolves its own upstreams through the node
    volumes: list[Obj] = field(default_factory=list)
    mounts: list[Obj] = field(default_factory=list)
    pod_annotations: dict[str, str] = field(default_factory=dict)
    expose: str = "cluster-ip"

    @property
    def namespace(self) -> str:
        return self.options.namespace

    def labels(self) -> dict[str, str]:
        return {"app.kubernetes.io/name": "interkube", "app.kubernetes.io/instance": self.name,
                "app.kubernetes.io/component": self.component}

    def selector(self) -> dict[str, str]:
        return {"app.kubernetes.io/name": "interkube", "app.kubernetes.io/instance": self.name}

    def meta(self, name: str | None = None, **extra: Any) -> Obj:
        return {"name": name or self.name, "namespace": self.namespace,
                "labels": {**self.labels(), "app.kubernetes.io/managed-by": "interkube-render"}, **extra}

    @property
    def config_map_name(self) -> str:
        # The name carries the Corefile's hash: a changed Corefile is a new ConfigMap and so a new
        # ReplicaSet (a rolling update that `kubectl rollout undo` can take back), never a live
        # edit under running pods.
        digest = hashlib.sha256(self.corefile.encode()).hexdigest()[:10]
        return f"{self.name}-{digest}"


def add_mount(w: Workload, m: Mount) -> None:
    """A Secret or ConfigMap read-only at a directory, under a volume name of its own."""
    volume = f"{m.kind}-{m.name}"[:63]
    if any(v["name"] == volume for v in w.volumes):
        raise RenderError(f"{m.kind} {m.name} is mounted twice")
    source = {"secret": {"secretName": m.name}} if m.kind == "secret" else {"configMap": {"name": m.name}}
    w.volumes.append({"name": volume, **source})
    w.mounts.append({"name": volume, "mountPath": m.path, "readOnly": True})


def mounted_dirs(w: Workload) -> dict[str, str]:
    """Directory -> volume name of every mount of the container."""
    return {m["mountPath"]: m["name"] for m in w.mounts}


def config_map(w: Workload) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": w.meta(w.config_map_name),
            "data": {COREFILE_KEY: w.corefile}}


def grace_period(w: Workload) -> int:
    o = w.options
    if o.grace_period is not None:
        if o.grace_period <= w.facts.lameduck:
            raise RenderError(f"--grace-period {o.grace_period}s must exceed health's lameduck "
                              f"({w.facts.lameduck:g}s at {w.facts.health.where if w.facts.health else '?'})")
        return o.grace_period
    return math.ceil(w.facts.lameduck) + GRACE_MARGIN


#: Per server-key transport: the port name, the Service's port when the Corefile has one port of
#: that transport, and the protocols it is served over.
TRANSPORTS: Mapping[str, tuple[str, int, tuple[str, ...]]] = {
    "dns": ("dns", 53, ("UDP", "TCP")),
    "tls": ("dot", 853, ("TCP",)),
    "https": ("doh", 443, ("TCP",)),
}


def _listen_ports(facts: CorefileFacts) -> list[tuple[str, int, int, str]]:
    """(name, Service port, container port, protocol) of every port the Corefile listens on: the
    well-known port of each transport when the Corefile has one port of it, its own otherwise.
    Names are at most 15 characters, as Kubernetes wants."""
    for p in facts.ports:
        if p.transport not in TRANSPORTS:  # a transport added to the server but not here yet
            raise RenderError(f"{p.where}: cannot expose {p.transport}:// listeners yet")
    out = []
    for transport, (base, well_known, protocols) in TRANSPORTS.items():
        ports = [p.port for p in facts.ports if p.transport == transport]
        for port in ports:
            name = base if len(ports) == 1 else f"{base}-{port}"
            service_port = well_known if len(ports) == 1 else port
            for protocol in protocols:
                suffix = "-tcp" if protocol == "TCP" and len(protocols) > 1 else ""
                out.append((f"{name}{suffix}"[:15], service_port, port, protocol))
    return out


def _container_ports(facts: CorefileFacts) -> list[Obj]:
    ports = [{"name": name, "containerPort": port, "protocol": protocol}
             for name, _, port, protocol in _listen_ports(facts)]
    for name, ep in (("health", facts.health), ("ready", facts.ready), ("metrics", facts.metrics)):
        if ep is not None and not any(x["containerPort"] == ep.port and x["protocol"] == "TCP" for x in ports):
            ports.append({"name": name, "containerPort": ep.port, "protocol": "TCP"})
    return ports


def deployment(w: Workload) -> Obj:
    o = w.options
    facts = w.facts
    if facts.health is None or facts.ready is None:
        missing = " and ".join(n for n, e in (("health", facts.health), ("ready", facts.ready)) if e is None)
        raise RenderError(f"the Corefile has no {missing}: the Deployment's liveness probe asks /health "
                          "and its readiness probe /ready; add them to a server block")
    capabilities: Obj = {"drop": ["ALL"]}
    pod_security: Obj = {"runAsNonRoot": True, "runAsUser": o.run_as_user, "runAsGroup": o.run_as_user,
                         "seccompProfile": {"type": "RuntimeDefault"}}
    if facts.privileged_ports:
        # As CoreDNS's manifests: the one capability needed to bind port 53 as a non-root user,
        # everything else dropped. The capability only takes effect for a binary that carries it
        # (file capabilities); the pod's own network namespace may also simply let unprivileged
        # users bind low ports, which works for any interpreter (a "safe" sysctl since 1.22).
        capabilities["add"] = ["NET_BIND_SERVICE"]
        lowest = min([p.port for p in facts.ports] + [e.port for e in (facts.health, facts.ready, facts.metrics)
                                                       if e is not None])
        pod_security["sysctls"] = [{"name": "net.ipv4.ip_unprivileged_port_start", "value": str(lowest)}]
    resources: Obj = {"requests": {"cpu": o.cpu_request, "memory": o.memory_request},
                      "limits": {"memory": o.memory_limit}}
    if o.cpu_limit:
        resources["limits"]["cpu"] = o.cpu_limit
    container: Obj = {
        "name": "interkube",
        "image": o.image,
        "imagePullPolicy": o.image_pull_policy,
        "args": list(SERVE_ARGS),
        "ports": _container_ports(facts),
        "livenessProbe": {"httpGet": {"path": "/health", "port": facts.health.port, "scheme": "HTTP"},
                          "initialDelaySeconds": 10, "periodSeconds": 10, "timeoutSeconds": 5,
                          "failureThreshold": 5},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": facts.ready.port, "scheme": "HTTP"},
                           "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 2},
        "resources": resources,
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": capabilities},
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                         {"name": "tmp", "mountPath": "/tmp"}, *w.mounts],
    }
    term = {"labelSelector": {"matchLabels": w.selector()}, "topologyKey": "kubernetes.io/hostname"}
    if o.anti_affinity == "required":
        affinity: Obj = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    else:
        affinity = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": term}]}}
    pod_spec: Obj = {
        "serviceAccountName": w.service_account,
        # Only the kubernetes plugin talks to the API, with the token projected for it below
        # when it needs one.
        "automountServiceAccountToken": any(not k.kubeconfig and not k.endpoint and not k.snapshot
                                            for k in facts.kubernetes),
        "dnsPolicy": w.dns_policy,
        "securityContext": pod_security,
        "terminationGracePeriodSeconds": grace_period(w),
        "affinity": affinity,
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                       "whenUnsatisfiable": "ScheduleAnyway",
                                       "labelSelector": {"matchLabels": w.selector()}}],
        "containers": [container],
        "volumes": [{"name": "config", "configMap": {"name": w.config_map_name,
                                                     "items": [{"key": COREFILE_KEY, "path": COREFILE_KEY}]}},
                    {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}, *w.volumes],
    }
    if o.priority_class:
        pod_spec["priorityClassName"] = o.priority_class
    spec: Obj = {
        "replicas": o.replicas,
        "revisionHistoryLimit": 10,
        "selector": {"matchLabels": w.selector()},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "25%"}},
        "template": {"metadata": {"labels": w.labels()}, "spec": pod_spec},
    }
    annotations = dict(w.pod_annotations)
    if facts.metrics is not None:
        # The convention Prometheus' kubernetes_sd examples scrape by (as CoreDNS's manifests).
        annotations.update({"prometheus.io/scrape": "true", "prometheus.io/port": str(facts.metrics.port)})
    if annotations:
        spec["template"]["metadata"]["annotations"] = annotations
    if o.hpa_max is not None:
        del spec["replicas"]  # the autoscaler owns the count; an apply must not reset it
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": w.meta(), "spec": spec}


def pod_disruption_budget(w: Workload) -> Obj:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": w.meta(),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": w.selector()}}}


def autoscaler(w: Workload) -> Obj | None:
    o = w.options
    if o.hpa_max is None:
        return None
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": w.meta(),
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": w.name},
                     "minReplicas": o.replicas, "maxReplicas": o.hpa_max,
                     "metrics": [{"type": "Resource", "resource": {
                         "name": "cpu", "target": {"type": "Utilization", "averageUtilization": o.hpa_cpu}}}],
                     # Scale down slowly: DNS clients cache the server list, and a flapping
                     # replica count costs connections, not just capacity.
                     "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300,
                                                "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}}}}


#: Internal load balancer annotations, per cloud.
LB_ANNOTATIONS: Mapping[str, Mapping[str, str]] = {
    # AWS load balancer controller: an internal NLB straight to the pods' addresses.
    # The NLB keeps the client's address (off by default for ip targets), which the acl checks.
    "aws": {"service.beta.kubernetes.io/aws-load-balancer-type": "external",
            "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal",
            "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip",
            "service.beta.kubernetes.io/aws-load-balancer-target-group-attributes": "preserve_client_ip.enabled=true"},
    "gcp": {"networking.gke.io/load-balancer-type": "Internal"},
    "azure": {"service.beta.kubernetes.io/azure-load-balancer-internal": "true"},
}


def service_ports(facts: CorefileFacts) -> list[Obj]:
    """The Service's ports: DNS on 53 (UDP and TCP), DoT on 853, DoH on 443 when the Corefile has
    one port of each; the Corefile's own numbers otherwise."""
    return [{"name": name, "port": service_port, "targetPort": port, "protocol": protocol}
            for name, service_port, port, protocol in _listen_ports(facts)]


def services(w: Workload) -> list[Obj]:
    o = w.options
    ports = service_ports(w.facts)
    spec: Obj = {"type": "ClusterIP", "selector": w.selector(), "ports": ports}
    annotations: dict[str, str] = {}
    if w.expose == "internal-lb":
        assert o.cloud is not None
        spec["type"] = "LoadBalancer"
        annotations.update(LB_ANNOTATIONS[o.cloud])
        # Keep the client's address (the DoT front's acl and the logs see it) and skip the
        # second hop through another node.
        spec["externalTrafficPolicy"] = "Local"
        if o.load_balancer_ip:
            spec["loadBalancerIP"] = o.load_balancer_ip
    elif o.cluster_ip:
        spec["clusterIP"] = o.cluster_ip
    if not (w.expose == "internal-lb" and o.split_protocols) or \
            len({p["protocol"] for p in ports}) == 1:
        return [_service(w, w.name, spec, annotations)]
    out = []
    for proto in ("UDP", "TCP"):
        part = {**spec, "ports": [p for p in ports if p["protocol"] == proto]}
        extra = dict(annotations)
        if o.cloud == "azure":
            # Azure shares one frontend address between Services that ask for the same IP.
            extra["service.beta.kubernetes.io/azure-load-balancer-ipv4"] = str(o.load_balancer_ip)
        out.append(_service(w, f"{w.name}-{proto.lower()}", part, extra))
    return out


def _service(w: Workload, name: str, spec: Obj, annotations: Mapping[str, str]) -> Obj:
    meta = w.meta(name)
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


def objects(w: Workload) -> list[Obj]:
    """ConfigMap, Deployment, PodDisruptionBudget, the autoscaler when asked, Service(s)."""
    out = [config_map(w), deployment(w), pod_disruption_budget(w)]
    hpa = autoscaler(w)
    if hpa is not None:
        out.append(hpa)
    out.extend(services(w))
    return out

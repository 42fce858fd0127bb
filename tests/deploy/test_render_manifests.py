"""Every object `interkube render` writes, for several option combinations, passes a server-side
dry run (strict field validation) on the real kube-apiserver, and says what the issue asks of it:
replicas on different nodes, probes, lameduck within the grace period, non-root and read-only,
the capability for port 53 and nothing else, RBAC from the Corefile's plugins and nothing more,
the cloud's internal load balancer annotations."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from interkube.deploy.render import render_argv

from deploykit import PLAN, by_kind, container, one

pytestmark = pytest.mark.peers

Apply = Callable[[Iterable[Mapping[str, Any]]], list[dict[str, Any]]]
Obj = dict[str, Any]

COREFILE = """\
.:53 {
    errors
    health {
        lameduck 7s
    }
    ready
    prometheus :9153
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods verified
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 30
    forward . /etc/resolv.conf
}
"""

@pytest.fixture
def corefile(tmp_path: Path) -> Path:
    path = tmp_path / "Corefile"
    path.write_text(COREFILE)
    return path


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN)
    return path


def test_plain_corefile(corefile: Path, kube_ns: str, dry_run: Apply) -> None:
    objects = render_argv(["-conf", str(corefile), "--namespace", kube_ns])
    assert [o["kind"] for o in objects] == ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap",
                                            "Deployment", "PodDisruptionBudget", "Service"]
    stored = dry_run(objects)
    assert [s["kind"] for s in stored] == [o["kind"] for o in objects]

    cm = one(objects, "ConfigMap")
    assert cm["data"] == {"Corefile": COREFILE}
    dep = one(objects, "Deployment")
    spec = dep["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "25%"}}
    pod = spec["template"]["spec"]
    assert pod["dnsPolicy"] == "Default"
    assert pod["priorityClassName"] == "system-cluster-critical"
    # lameduck 7s, plus the margin for the rest of the shutdown
    assert pod["terminationGracePeriodSeconds"] == 17
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert anti["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert anti["podAffinityTerm"]["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["volumes"][0]["configMap"]["name"] == cm["metadata"]["name"]
    # Reads its own cluster through the pod's service account.
    assert pod["automountServiceAccountToken"] is True
    c = container(dep)
    assert c["image"].startswith("ghcr.io/interkube/interkube:")
    assert c["args"] == ["serve", "-conf", "/etc/interkube/Corefile"]
    assert {"name": "config", "mountPath": "/etc/interkube", "readOnly": True} in c["volumeMounts"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": 8080, "scheme": "HTTP"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 8181, "scheme": "HTTP"}
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    # Port 53 as a non-root user: that one capability, everything else dropped (as CoreDNS).
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    assert {(p["containerPort"], p["protocol"]) for p in c["ports"]} >= {(53, "UDP"), (53, "TCP")}

    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    svc = one(objects, "Service")
    assert svc["spec"]["type"] == "ClusterIP"
    assert {(p["port"], p["protocol"]) for p in svc["spec"]["ports"]} == {(53, "UDP"), (53, "TCP")}

    # RBAC: what the kubernetes stanza reads (pods: `pods verified`), and no MCS objects.
    role = one(objects, "ClusterRole")
    granted = {(g, r, tuple(rule["verbs"])) for rule in role["rules"] for g in rule["apiGroups"]
               for r in rule["resources"]}
    assert granted == {("", "services", ("list", "watch")), ("", "namespaces", ("list", "watch")),
                       ("", "pods", ("list", "watch")), ("discovery.k8s.io", "endpointslices", ("list", "watch"))}
    binding = one(objects, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "interkube", "namespace": kube_ns}]


def test_unprivileged_port_needs_no_capability(tmp_path: Path, kube_ns: str, dry_run: Apply) -> None:
    path = tmp_path / "Corefile"
    path.write_text(".:5353 {\n    health :8080\n    ready :8181\n    forward . 127.0.0.1:5399\n}\n")
    objects = render_argv(["-conf", str(path), "--namespace", kube_ns, "--anti-affinity", "required",
                           "--priority-class", "", "--replicas", "3"])
    dry_run(objects)
    dep = one(objects, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    assert container(dep)["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert "sysctls" not in pod["securityContext"]
    assert "priorityClassName" not in pod
    assert dep["spec"]["replicas"] == 3
    assert pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0][
        "topologyKey"] == "kubernetes.io/hostname"
    # No kubernetes stanza: no API access at all.
    assert [o["kind"] for o in objects if o["kind"].startswith("ClusterRole")] == []
    assert pod["automountServiceAccountToken"] is False
    # The Service answers on 53 whatever the Corefile's port.
    svc = one(objects, "Service")
    assert {(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]} == {(53, 5353)}


def test_every_listener_is_exposed(tmp_path: Path, kube_ns: str, dry_run: Apply) -> None:
    path = tmp_path / "Corefile"
    path.write_text(".:53 {\n    health\n    ready\n    forward . /etc/resolv.conf\n}\n"
                    "example.org:5300 {\n    whoami\n}\n"
                    "https://.:8443 {\n    whoami\n}\n")
    objects = render_argv(["-conf", str(path), "--namespace", kube_ns])
    dry_run(objects)
    svc = one(objects, "Service")
    # Several DNS ports keep their numbers; the one DoH port is 443 on the Service.
    assert sorted((p["name"], p["port"], p["targetPort"], p["protocol"]) for p in svc["spec"]["ports"]) == sorted([
        ("dns-5300", 5300, 5300, "UDP"), ("dns-5300-tcp", 5300, 5300, "TCP"),
        ("dns-53", 53, 53, "UDP"), ("dns-53-tcp", 53, 53, "TCP"), ("doh", 443, 8443, "TCP")])
    ports = container(one(objects, "Deployment"))["ports"]
    assert {(p["containerPort"], p["protocol"]) for p in ports} == {
        (53, "UDP"), (53, "TCP"), (5300, "UDP"), (5300, "TCP"), (8443, "TCP"), (8080, "TCP"), (8181, "TCP")}


@pytest.mark.parametrize(("cloud", "annotations"), [
    ("aws", {"service.beta.kubernetes.io/aws-load-balancer-scheme": "internal",
             "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip"}),
    ("gcp", {"networking.gke.io/load-balancer-type": "Internal"}),
    ("azure", {"service.beta.kubernetes.io/azure-load-balancer-internal": "true"}),
])
def test_internal_load_balancer(cloud: str, annotations: dict[str, str], corefile: Path, kube_ns: str,
                                dry_run: Apply) -> None:
    objects = render_argv(["-conf", str(corefile), "--namespace", kube_ns, "--expose", "internal-lb",
                           "--cloud", cloud])
    dry_run(objects)
    svc = one(objects, "Service")
    assert svc["spec"]["type"] == "LoadBalancer"
    assert annotations.items() <= svc["metadata"]["annotations"].items()
    # TCP and UDP 53 on one address.
    assert {(p["port"], p["protocol"]) for p in svc["spec"]["ports"]} == {(53, "UDP"), (53, "TCP")}


@pytest.mark.parametrize("cloud", ["gcp", "azure"])
def test_split_protocols_share_one_address(cloud: str, corefile: Path, kube_ns: str, dry_run: Apply) -> None:
    objects = render_argv(["-conf", str(corefile), "--namespace", kube_ns, "--expose", "internal-lb",
                           "--cloud", cloud, "--split-protocols", "--load-balancer-ip", "10.0.0.53"])
    dry_run(objects)
    services = by_kind(objects, "Service")
    assert [s["metadata"]["name"] for s in services] == ["interkube-udp", "interkube-tcp"]
    assert [{p["protocol"] for p in s["spec"]["ports"]} for s in services] == [{"UDP"}, {"TCP"}]
    assert {s["spec"]["loadBalancerIP"] for s in services} == {"10.0.0.53"}


def test_autoscaler(corefile: Path, kube_ns: str, dry_run: Apply) -> None:
    objects = render_argv(["-conf", str(corefile), "--namespace", kube_ns, "--hpa-max", "6", "--hpa-cpu", "60"])
    dry_run(objects)
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] == 2 and hpa["spec"]["maxReplicas"] == 6
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 60
    # The autoscaler owns the replica count: an apply of the Deployment must not reset it.
    assert "replicas" not in one(objects, "Deployment")["spec"]


def test_mcs_grants_service_exports_and_imports(tmp_path: Path, kube_ns: str, dry_run: Apply) -> None:
    path = tmp_path / "Corefile"
    path.write_text(".:53 {\n    health\n    ready\n    kubernetes cluster.local {\n        noendpoints\n    }\n"
                    "    clusterset clusterset.local {\n        mcs\n    }\n}\n")
    objects = render_argv(["-conf", str(path), "--namespace", kube_ns])
    dry_run(objects)
    role = one(objects, "ClusterRole")
    granted = {(g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    # noendpoints: no EndpointSlices; mcs: the MCS objects.
    assert granted == {("", "services"), ("", "namespaces"), ("multicluster.x-k8s.io", "serviceexports"),
                       ("multicluster.x-k8s.io", "serviceimports")}


def test_kubernetai_and_multicluster_are_read_like_kubernetes(tmp_path: Path, kube_ns: str,
                                                             dry_run: Apply) -> None:
    path = tmp_path / "Corefile"
    path.write_text(".:53 {\n    health\n    ready\n"
                    "    kubernetai cluster.local {\n        pods verified\n    }\n"
                    "    kubernetai cluster.west {\n        kubeconfig /etc/kubeconfigs/west.yaml\n    }\n}\n"
                    "clusterset.local:53 {\n    kubernetes clusterset.local {\n        multicluster clusterset.local\n"
                    "        noendpoints\n    }\n}\n")
    objects = render_argv(["-conf", str(path), "--namespace", kube_ns])
    dry_run(objects)
    role = one(objects, "ClusterRole")
    granted = {(g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    # pods: the in-cluster kubernetai stanza; MCS objects: multicluster; EndpointSlices: the
    # kubernetai stanza, though the kubernetes one says noendpoints.
    assert granted == {("", "services"), ("", "namespaces"), ("", "pods"), ("discovery.k8s.io", "endpointslices"),
                       ("multicluster.x-k8s.io", "serviceexports"), ("multicluster.x-k8s.io", "serviceimports")}
    # The kubernetai stanza with a kubeconfig gets its Secret mounted.
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if "projected" in v]
    assert volume["projected"]["sources"][0]["secret"]["name"] == "interkube-kubeconfig-west"


def test_kubeconfig_stanza_mounts_its_secret(tmp_path: Path, kube_ns: str, dry_run: Apply) -> None:
    path = tmp_path / "Corefile"
    path.write_text(".:53 {\n    health\n    ready\n"
                    "    kubernetes cluster.west {\n        kubeconfig /etc/kubeconfigs/west.yaml west\n    }\n"
                    "    kubernetes cluster.north {\n        kubeconfig /etc/kubeconfigs/north.yaml\n"
                    "        cluster north\n    }\n}\n")
    kubeconfig = tmp_path / "west.kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    objects = render_argv(["-conf", str(path), "--namespace", kube_ns, "--kubeconfig", f"west={kubeconfig}"])
    dry_run(objects)
    # Both clusters are read through kubeconfigs: no grant in this cluster, no token mounted.
    assert not by_kind(objects, "ClusterRole")
    secret = one(objects, "Secret")
    assert secret["metadata"]["name"] == "interkube-kubeconfig-west"
    dep = one(objects, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    (volume,) = [v for v in pod["volumes"] if "projected" in v]
    assert volume["projected"]["sources"] == [
        {"secret": {"name": "interkube-kubeconfig-west", "items": [{"key": "kubeconfig", "path": "west.yaml"}]}},
        {"secret": {"name": "interkube-kubeconfig-north", "items": [{"key": "kubeconfig", "path": "north.yaml"}]}}]
    assert {"name": volume["name"], "mountPath": "/etc/kubeconfigs", "readOnly": True} in \
        container(dep)["volumeMounts"]


def test_plan(plan: Path, kube_ns: str, dry_run: Apply) -> None:
    objects = render_argv(["--plan", str(plan), "--cluster", "east", "--namespace", kube_ns])
    dry_run(objects)
    corefile = one(objects, "ConfigMap")["data"]["Corefile"]
    assert "kubernetes cluster.local cluster.east {" in corefile
    assert "remote.svc.cluster.local:53 {" in corefile
    assert "forward . 10.1.28.194" in corefile
    assert "merge cluster.west {\n        cluster west 10.1.28.194 cluster.local" in corefile
    assert "cluster.all:53 {" in corefile and "local east" in corefile
    assert "forward . 172.20.0.10" in corefile
    assert "allow net 127.0.0.0/8 ::1 10.0.0.0/16" in corefile
    # No TLS asked: no DoT front, no certificates.
    assert [o["metadata"]["name"] for o in by_kind(objects, "Deployment")] == ["interkube"]


def test_plan_from_api(plan: Path, tmp_path: Path, kube_ns: str, dry_run: Apply) -> None:
    kubeconfig = tmp_path / "west.kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    objects = render_argv(["--plan", str(plan), "--cluster", "east", "--namespace", kube_ns,
                           "--from-api", "west", "--kubeconfig", f"west={kubeconfig}"])
    dry_run(objects)
    corefile = one(objects, "ConfigMap")["data"]["Corefile"]
    assert "kubernetes cluster.west {\n        kubeconfig /etc/interkube/remote/west/kubeconfig" in corefile
    one(objects, "Secret", "interkube-kubeconfig-west")
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if "projected" in v]
    assert volume["projected"]["sources"] == [
        {"secret": {"name": "interkube-kubeconfig-west", "items": [{"key": "kubeconfig", "path": "kubeconfig"}]}}]


def test_plan_dot_with_cert_manager_and_mtls(plan: Path, kube_ns: str, dry_run: Apply,
                                             cert_manager_crd: None) -> None:
    objects = render_argv(["--plan", str(plan), "--cluster", "west", "--namespace", kube_ns, "--tls", "--mtls",
                           "--issuer", "interkube-dns-ca", "--cloud", "gcp", "--remote-dns", "east=10.0.0.53"])
    dry_run(objects)
    certs = {c["metadata"]["name"]: c for c in by_kind(objects, "Certificate")}
    assert set(certs) == {"interkube-dot-client", "interkube-dot"}
    assert certs["interkube-dot"]["spec"]["dnsNames"][0] == "dns.west"
    assert certs["interkube-dot"]["spec"]["usages"] == ["digital signature", "server auth"]
    assert certs["interkube-dot-client"]["spec"]["usages"] == ["digital signature", "client auth"]
    assert certs["interkube-dot"]["spec"]["issuerRef"] == {"group": "cert-manager.io", "kind": "ClusterIssuer",
                                                           "name": "interkube-dns-ca"}
    configs = {c["metadata"]["name"].rsplit("-", 1)[0]: c["data"]["Corefile"] for c in by_kind(objects, "ConfigMap")}
    local, front = configs["interkube"], configs["interkube-dot"]
    # The local side asks east's DoT front over TLS, verifying its name, with a client certificate.
    assert "cluster east tls://10.0.0.53 cluster.local" in local
    assert "tls_servername dns.east" in local
    assert "tls /etc/interkube/dot-client/tls.crt /etc/interkube/dot-client/tls.key " \
           "/etc/interkube/dot-client/ca.crt" in local
    # The front: port 853, mutual TLS, only for east's networks, forwarding to west's own DNS.
    assert "tls://cluster.local:853 {" in front
    assert "client_auth require_and_verify" in front
    assert "allow net 127.0.0.0/8 ::1 10.0.0.0/16" in front
    assert "forward . 172.21.0.10" in front
    svc = one(objects, "Service", "interkube-dot")
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["metadata"]["annotations"]["networking.gke.io/load-balancer-type"] == "Internal"
    assert [(p["port"], p["protocol"]) for p in svc["spec"]["ports"]] == [(853, "TCP")]
    front_dep = one(objects, "Deployment", "interkube-dot")
    pod = front_dep["spec"]["template"]["spec"]
    assert {"secretName": "interkube-dot"} in [v.get("secret") for v in pod["volumes"]]
    # The front reads no API: no RBAC, no token.
    assert pod["automountServiceAccountToken"] is False
    assert [r["metadata"]["name"] for r in by_kind(objects, "ClusterRole")] == [f"{kube_ns}:interkube"]


def test_plan_dot_with_secrets_from_interkube_certs(plan: Path, kube_ns: str, dry_run: Apply) -> None:
    objects = render_argv(["--plan", str(plan), "--cluster", "east", "--namespace", kube_ns, "--tls",
                           "--tls-secret", "dot-server", "--mtls", "--client-tls-secret", "dot-client",
                           "--cloud", "aws", "--remote-dns", "west=10.1.0.53"])
    dry_run(objects)
    assert not by_kind(objects, "Certificate")
    local = one(objects, "Deployment", "interkube")["spec"]["template"]["spec"]
    front = one(objects, "Deployment", "interkube-dot")["spec"]["template"]["spec"]
    assert {"secretName": "dot-client"} in [v.get("secret") for v in local["volumes"]]
    assert {"secretName": "dot-server"} in [v.get("secret") for v in front["volumes"]]
    corefile = [c for c in by_kind(objects, "ConfigMap") if "tls://cluster.local:853" not in c["data"]["Corefile"]]
    assert "forward . tls://10.1.0.53 {" in corefile[0]["data"]["Corefile"]


def test_remote_access(kube_ns: str, dry_run: Apply) -> None:
    from interkube.deploy import rbac, remote

    objects = remote.objects("interkube-remote-reader", kube_ns, rbac.Needs(pods=True))
    assert [o["kind"] for o in objects] == ["ServiceAccount", "Secret", "ClusterRole", "ClusterRoleBinding"]
    dry_run(objects)
    secret = one(objects, "Secret")
    assert secret["type"] == "kubernetes.io/service-account-token"
    assert secret["metadata"]["annotations"] == {"kubernetes.io/service-account.name": "interkube-remote-reader"}
    role = one(objects, "ClusterRole")
    assert {v for rule in role["rules"] for v in rule["verbs"]} == {"list", "watch"}
